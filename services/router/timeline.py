"""One monotonic program timeline built from whichever input is live.

Pure core: ``feed(packet, now)`` returns the packet restamped onto the program timeline, or None when
it must not go out (a non-live source, or the new source before its first keyframe). A switch takes
effect at the next video keyframe of the new source; its timestamps are offset so that program DTS
continues from where it stopped plus the real time that passed (at least one frame), so destinations
never see time go backwards and latency does not build up across switches. A source whose own clock
jumps (publisher restart, encoder reset) is re-anchored the same way at its next keyframe. ``now`` is
when the packet arrived.

``replay(gop)`` starts the pending source from its cached GOP instead, so an unplanned switch does not
wait up to a GOP for the next keyframe. Those frames arrived a little while ago, some of them before
the old source's last packet: stamped at their natural spacing from one frame after the program's last
packet, they leave the program *ahead* of the wall clock by that much (its ``lead``, at most a GOP;
the shell does not replay when it would be more). Destinations then hold that much more media. The
lead is paid back without a visible gap and without drift: at the next switch with a real gap (the
jump shrinks, never below a frame), and otherwise by skipping the live source's last ``lead`` of
content before its next keyframe (the destinations play what they hold meanwhile; DTS stays
continuous). Frame spacing never shrinks below a frame, so every destination sees an ordinary stream.
"""

from __future__ import annotations

from shared.messages import TIMEBASE, MediaPacket

DEFAULT_FRAME = TIMEBASE // 30
RESYNC_TOLERANCE = TIMEBASE  # a source clock that strays this far from wall-clock progress is re-anchored
MIN_SKIP = TIMEBASE // 10  # smaller leads are not worth a skip; the next real gap absorbs them
_RATES = (24000 / 1001, 24, 25, 30000 / 1001, 30, 50, 60000 / 1001, 60)


def _frame_duration(average: float) -> int:
    """The frame duration (1/90000) of the nearest common frame rate, or the average itself: sources
    stamp in milliseconds, so 30 fps arrives as 33 and 34 ms steps."""
    nearest = min((TIMEBASE / rate for rate in _RATES), key=lambda d: abs(d - average))
    return round(nearest) if abs(nearest - average) <= 0.03 * nearest else round(average)


class ProgramTimeline:
    def __init__(self) -> None:
        self.source: str | None = None
        self.pending: str | None = None
        self.offset = 0
        self.lead = 0  # how far (1/90000) the program runs ahead of the wall clock after a replay
        self.absorbed = 0  # lead paid back so far (1/90000), for figures
        self._last_dts: dict[str, int] = {}
        self._last_wall: float | None = None
        self._frame = DEFAULT_FRAME
        self._frame_average = float(DEFAULT_FRAME)
        self._last_video_in: int | None = None
        self._awaiting_keyframe = False
        self._skipping = False
        self._key_arrived: float | None = None  # when the live source's last keyframe arrived
        self._gops: dict[str, tuple[int, int]] = {}  # source -> (last keyframe dts, keyframe interval)

    @property
    def frame_ticks(self) -> int:
        """The live source's frame duration (1/90000), as measured from its video DTS."""
        return self._frame

    @property
    def last_dts(self) -> int | None:
        return max(self._last_dts.values()) if self._last_dts else None

    def mark(self) -> tuple[int, float, int] | None:
        """(last dts, when it was sent, lead): what ``resume`` needs."""
        if not self._last_dts or self._last_wall is None:
            return None
        return max(self._last_dts.values()), self._last_wall, self.lead

    def resume(self, last_dts: int, last_wall: float, lead: int = 0) -> None:
        """Continue a program another timeline (a router before its restart) left at ``last_dts``: the
        first source is placed like a switch, the real gap after it."""
        self._last_dts = {"video": last_dts, "audio": last_dts}
        self._last_wall = last_wall
        self.lead = max(0, lead)

    def switch_to(self, source: str) -> None:
        """Make ``source`` live at its next video keyframe (immediately if nothing is live yet)."""
        if source == self.source:
            self.pending = None
            return
        self.pending = source

    def feed(self, packet: MediaPacket, now: float) -> MediaPacket | None:
        if packet.kind == "video" and packet.keyframe:
            last_key, gop = self._gops.get(packet.source, (packet.dts, 0))
            if 0 < packet.dts - last_key <= 20 * TIMEBASE:
                gop = packet.dts - last_key
            self._gops[packet.source] = (packet.dts, gop)
        if packet.source != self.source:
            if packet.source != self.pending or not _starts_program(packet):
                return None
            self.source = packet.source
            self.pending = None
            self._start_source()
            self._anchor(packet, now)
        elif packet.kind == "video" and self._needs_resync(packet, now):
            if not packet.keyframe:
                self._awaiting_keyframe = True
                return None
            self._anchor(packet, now)
        elif (self._awaiting_keyframe or self._skipping) and packet.kind == "video":
            if not packet.keyframe:
                return None
            self._anchor(packet, now)
        elif self._skipping:
            return None if packet.kind == "audio" else self._emit(packet, now)
        elif packet.kind == "video" and not packet.keyframe and self._time_to_skip(now):
            self._skipping = True
            return None
        self._measure(packet, now)
        return self._emit(packet, now)

    def lead_after_replay(self, gop: list[tuple[MediaPacket, float]]) -> int:
        """The lead (1/90000) that replaying ``gop`` would leave: the shell replays only up to a GOP."""
        if not gop or not self._last_dts or self._last_wall is None:
            return self.lead
        real_gap = round((gop[0][1] - self._last_wall) * TIMEBASE)
        return max(0, self.lead + self._jump(gop[0][1]) - real_gap)

    def gop_of(self, source: str) -> int:
        """A source's keyframe interval (1/90000) from its own timestamps; 0 until measured."""
        return self._gops.get(source, (0, 0))[1]

    def replay(self, gop: list[tuple[MediaPacket, float]]) -> list[MediaPacket]:
        """Start the pending source from its cached GOP (keyframe first, each packet with the time it
        arrived); returns what goes out, in order. Nothing when the GOP cannot start the program."""
        if not gop or gop[0][0].source != self.pending or not _starts_program(gop[0][0]):
            return []
        out: list[MediaPacket] = []
        for packet, arrived in gop:
            emitted = self.feed(packet, arrived)
            if emitted is not None:
                out.append(emitted)
        return out

    def _start_source(self) -> None:
        self._skipping = False
        self._key_arrived = None

    def _measure(self, packet: MediaPacket, now: float) -> None:
        if packet.kind != "video":
            return
        if self._last_video_in is not None and 0 < packet.dts - self._last_video_in < TIMEBASE:
            self._frame_average += (packet.dts - self._last_video_in - self._frame_average) / 8
            self._frame = _frame_duration(self._frame_average)
        self._last_video_in = packet.dts
        if packet.keyframe:
            self._key_arrived = now

    def _time_to_skip(self, now: float) -> bool:
        """Pay a lead back: stop sending the live source ``lead`` before its next keyframe is due."""
        gop = self.gop_of(self.source or "")
        if self.lead < MIN_SKIP or not gop or self._key_arrived is None:
            return False
        due = self._key_arrived + gop / TIMEBASE
        return now + min(self.lead, gop - self._frame) / TIMEBASE >= due

    def _needs_resync(self, packet: MediaPacket, now: float) -> bool:
        last = self._last_dts.get("video")
        if last is None or self._last_wall is None:
            return False
        mapped = packet.dts + self.offset
        expected = last + int((now - self._last_wall) * TIMEBASE)
        return mapped <= last or abs(mapped - expected) > RESYNC_TOLERANCE

    def _jump(self, now: float) -> int:
        """How far past the program's last packet a keyframe that arrived at ``now`` goes: the real
        gap less any lead, in whole frames (the program's frames stay on one grid, so every frame
        keeps its own slot at a constant frame rate), at least one."""
        assert self._last_wall is not None
        real_gap = round((now - self._last_wall) * TIMEBASE)
        return self._frame * max(1, round((real_gap - self.lead) / self._frame))

    def _anchor(self, packet: MediaPacket, now: float) -> None:
        self._awaiting_keyframe = False
        self._skipping = False
        self._last_video_in = None
        if not self._last_dts or self._last_wall is None:
            self.offset = 0 if packet.dts >= 0 else -packet.dts
            return
        # from the last video frame, in whole frames: the program's video stays on one frame grid
        # (audio that would go backwards in its own track is dropped)
        last = self._last_dts.get("video", max(self._last_dts.values()))
        jump = self._jump(now)
        real_gap = round((now - self._last_wall) * TIMEBASE)
        lead = max(0, self.lead + jump - real_gap)
        self.absorbed += max(0, self.lead - lead)
        self.lead = lead
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
