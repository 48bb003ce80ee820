"""One monotonic program timeline built from whichever input is live.

Pure core: ``feed(packet, now)`` returns the packet restamped onto the program timeline, or None when
it must not go out (a non-live source, or the new source before its first keyframe). A switch takes
effect at the next video keyframe of the new source; its timestamps are offset so that program DTS
continues from where it stopped plus the real time that passed (at least one frame), so destinations
never see time go backwards and latency does not build up across switches. A source whose own clock
jumps (publisher restart, encoder reset) is re-anchored the same way at its next keyframe.
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
        if not self._last_dts or self._last_wall is None:
            self.offset = 0 if packet.dts >= 0 else -packet.dts
            return
        last = max(self._last_dts.values())
        gap = max(self._frame, int((now - self._last_wall) * TIMEBASE))
        self.offset = last + gap - packet.dts

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
