"""One monotonic program timeline built from whichever input is live.

Pure core: ``feed(packet, now)`` returns the packet restamped onto the program timeline, or None when
it must not go out (a non-live source, or the new source before its first keyframe). A switch takes
effect at the next video keyframe of the new source; its timestamps are offset so that program DTS
continues from where it stopped plus the real time that passed (at least one frame), so destinations
never see time go backwards and latency does not build up across switches. A source whose own clock
jumps (publisher restart, encoder reset) is re-anchored the same way at its next keyframe.

``now`` is when the packet arrived. A switch may start from a keyframe that arrived a little earlier
(the new source's cached GOP, fed with the times it arrived), so the program can run ahead of the wall
clock by up to one GOP. The timeline keeps a wall-clock reference and absorbs that lead at the next
switch (jumping less than the real gap, never less than a frame); when the program is behind, it
accepts the lag rather than jump further than the real gap. Either way it never drifts.
"""

from __future__ import annotations

from shared.messages import TIMEBASE, MediaPacket

DEFAULT_FRAME = TIMEBASE // 30
RESYNC_TOLERANCE = TIMEBASE  # a source clock that strays this far from wall-clock progress is re-anchored


class ProgramTimeline:
    def __init__(self) -> None:
        self.source: str | None = None
        self.pending: str | None = None
        self.offset = 0
        self._last_dts: dict[str, int] = {}
        self._last_wall: float | None = None
        self._frame = DEFAULT_FRAME
        self._last_video_in: int | None = None
        self._awaiting_keyframe = False
        self._ref: tuple[float, int] | None = None  # (arrival time, program dts) on the wall clock

    @property
    def frame_ticks(self) -> int:
        """The live source's frame duration (1/90000), as measured from its video DTS."""
        return self._frame

    @property
    def last_dts(self) -> int | None:
        return max(self._last_dts.values()) if self._last_dts else None

    def mark(self) -> tuple[int, float, int, float] | None:
        """(last dts, when it was sent, reference dts, reference time): what ``resume`` needs."""
        if not self._last_dts or self._last_wall is None or self._ref is None:
            return None
        return max(self._last_dts.values()), self._last_wall, self._ref[1], self._ref[0]

    def resume(self, last_dts: int, last_wall: float, ref_dts: int, ref_wall: float) -> None:
        """Continue a program another timeline (a router before its restart) left at ``last_dts``: the
        first source is placed like a switch, the real gap after it."""
        self._last_dts = {"video": last_dts, "audio": last_dts}
        self._last_wall = last_wall
        self._ref = (ref_wall, ref_dts)

    def lead_if_started(self, arrived: float) -> float:
        """How far ahead of the wall clock (s) the program would run if a keyframe that arrived at
        ``arrived`` went out next: what decides whether a cached GOP may be replayed."""
        if not self._last_dts or self._last_wall is None or self._ref is None:
            return 0.0
        last = max(self._last_dts.values())
        start = last + self._jump(last, arrived)
        return (start - self._on_time(arrived)) / TIMEBASE

    def _on_time(self, now: float) -> int:
        assert self._ref is not None
        return self._ref[1] + round((now - self._ref[0]) * TIMEBASE)

    def _jump(self, last: int, now: float) -> int:
        assert self._last_wall is not None
        real_gap = max(self._frame, round((now - self._last_wall) * TIMEBASE))
        return max(self._frame, min(real_gap, self._on_time(now) - last))

    def switch_to(self, source: str) -> None:
        """Make ``source`` live at its next video keyframe (immediately if nothing is live yet)."""
        if source == self.source:
            self.pending = None
            return
        self.pending = source

    def feed(self, packet: MediaPacket, now: float) -> MediaPacket | None:
        if packet.source != self.source:
            if packet.source != self.pending or not _starts_program(packet):
                return None
            self.source = packet.source
            self.pending = None
            self._anchor(packet, now)
        elif packet.kind == "video" and self._needs_resync(packet, now):
            if not packet.keyframe:
                self._awaiting_keyframe = True
                return None
            self._anchor(packet, now)
        elif self._awaiting_keyframe and packet.kind == "video":
            if not packet.keyframe:
                return None
            self._anchor(packet, now)
        if packet.kind == "video":
            if self._last_video_in is not None and 0 < packet.dts - self._last_video_in < TIMEBASE:
                self._frame = packet.dts - self._last_video_in
            self._last_video_in = packet.dts
        return self._emit(packet, now)

    def _needs_resync(self, packet: MediaPacket, now: float) -> bool:
        last = self._last_dts.get("video")
        if last is None or self._last_wall is None:
            return False
        mapped = packet.dts + self.offset
        expected = last + int((now - self._last_wall) * TIMEBASE)
        return mapped <= last or abs(mapped - expected) > RESYNC_TOLERANCE

    def _anchor(self, packet: MediaPacket, now: float) -> None:
        self._awaiting_keyframe = False
        self._last_video_in = None
        if not self._last_dts or self._last_wall is None or self._ref is None:
            self.offset = 0 if packet.dts >= 0 else -packet.dts
            self._ref = (now, packet.dts + self.offset)
            return
        last = max(self._last_dts.values())
        jump = self._jump(last, now)
        if self._on_time(now) > last + jump:  # behind the wall clock: keep the lag, jump only the real gap
            self._ref = (now, last + jump)
        self.offset = last + jump - packet.dts

    def _emit(self, packet: MediaPacket, now: float) -> MediaPacket | None:
        dts = packet.dts + self.offset
        last = self._last_dts.get(packet.kind)
        if last is not None and dts <= last and packet.kind != "data":
            return None  # would go backwards in this track (interleaving right after a switch)
        if packet.kind != "data":
            self._last_dts[packet.kind] = dts
            self._last_wall = now
        if self.offset == 0:
            return packet
        return MediaPacket(
            kind=packet.kind,
            codec=packet.codec,
            dts=dts,
            pts=packet.pts + self.offset,
            keyframe=packet.keyframe,
            data=packet.data,
            config=packet.config,
            source=packet.source,
            seq=packet.seq,
            recv_ns=packet.recv_ns,
        )


def _starts_program(packet: MediaPacket) -> bool:
    return packet.kind == "video" and packet.keyframe and bool(packet.config)
