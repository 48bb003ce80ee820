"""Bitrate and keyframe interval of a stream of prepared messages: a feed's, or what a destination sent."""

from __future__ import annotations

from collections import deque

from .policy import ProgramFacts
from .prepared import Prepared

BITRATE_WINDOW_MS = 5_000
GOPS_REMEMBERED = 3


class ProgramMeter:
    """Bitrate over the last few seconds of media time, and the longest of the last few GOPs."""

    def __init__(self) -> None:
        self._sizes: deque[tuple[int, int]] = deque()  # (program ms, bytes)
        self._bytes = 0
        self._last_keyframe_ms: int | None = None
        self._gops: deque[int] = deque(maxlen=GOPS_REMEMBERED)

    def add(self, item: Prepared) -> None:
        ts = item.timestamp
        self._sizes.append((ts, len(item.body)))
        self._bytes += len(item.body)
        while self._sizes and (ts - self._sizes[0][0] > BITRATE_WINDOW_MS or ts < self._sizes[0][0]):
            self._bytes -= self._sizes.popleft()[1]
        if item.keyframe:
            if self._last_keyframe_ms is not None and ts > self._last_keyframe_ms:
                self._gops.append(ts - self._last_keyframe_ms)
            self._last_keyframe_ms = ts

    def facts(self) -> ProgramFacts:
        bitrate = 0
        if len(self._sizes) > 1:
            span_ms = self._sizes[-1][0] - self._sizes[0][0]
            if span_ms >= 1000:
                bitrate = self._bytes * 8 * 1000 // span_ms
        return ProgramFacts(bitrate_bps=bitrate, keyframe_interval_s=max(self._gops, default=0) / 1000)


class SentMeter:
    """What one destination wrote, at no per-packet cost beyond its keyframes: bitrate from its byte
    counter sampled once a second by the status loop, keyframe interval from the keyframes it wrote."""

    SAMPLES = 6  # about five seconds of byte-counter samples

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int]] = deque(maxlen=self.SAMPLES)
        self._last_keyframe_ms: int | None = None
        self._gops: deque[int] = deque(maxlen=GOPS_REMEMBERED)

    def keyframe(self, ts_ms: int) -> None:
        if self._last_keyframe_ms is not None and ts_ms > self._last_keyframe_ms:
            self._gops.append(ts_ms - self._last_keyframe_ms)
        self._last_keyframe_ms = ts_ms

    def sample(self, now: float, total_bytes: int) -> None:
        if self._samples and now - self._samples[-1][0] < 0.5:
            return  # status asked twice in a moment (a state change): keep the samples a second apart
        self._samples.append((now, total_bytes))

    def facts(self) -> ProgramFacts:
        bitrate = 0
        if len(self._samples) > 1:
            (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
            if t1 - t0 >= 1.0 and b1 >= b0:
                bitrate = int((b1 - b0) * 8 / (t1 - t0))
        return ProgramFacts(bitrate_bps=bitrate, keyframe_interval_s=max(self._gops, default=0) / 1000)
