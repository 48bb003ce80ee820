"""Content triggers: is an input's picture black or frozen, is its audio silent.

Pure measures over decoded samples (``sample_luma``, ``is_black``, ``mean_abs_diff``, ``rms_dbfs``) and
two blocking analysers that decode with PyAV. They are cheap by design: video decodes only keyframes
(each on a fresh decoder, so nothing else of the GOP is needed) and looks at a subsampled luma plane;
audio decodes AAC in batches. They run in a worker thread (``content_monitor``), never on the loop.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from typing import Any

import av

from shared.messages import MediaPacket

DARK_LUMA = 40  # at or below: a dark pixel (limited-range black is 16; 10% of the range above it is 38)
BLACK_RATIO = 0.98  # this share of dark pixels makes a black picture (ffmpeg blackdetect's default)
FROZEN_DIFF = 1.5  # mean absolute luma difference between keyframes below which the picture is frozen
SILENCE_DBFS = -60.0
MAX_SAMPLES = 20_000  # luma samples per picture

_BRIGHT = bytes(range(DARK_LUMA + 1, 256))


def sample_step(width: int, height: int) -> int:
    """Every n-th row and column, so a picture yields at most about MAX_SAMPLES samples."""
    return max(1, math.ceil(math.sqrt(width * height / MAX_SAMPLES)))


def sample_luma(plane: bytes, width: int, height: int, line_size: int, step: int) -> bytes:
    """A subsampled luma plane: every ``step``-th pixel of every ``step``-th row."""
    return b"".join(plane[y * line_size : y * line_size + width : step] for y in range(0, height, step))


def dark_ratio(sample: bytes) -> float:
    if not sample:
        return 0.0
    return len(sample.translate(None, _BRIGHT)) / len(sample)


def is_black(sample: bytes) -> bool:
    return bool(sample) and dark_ratio(sample) >= BLACK_RATIO


def mean_luma(sample: bytes) -> float:
    return sum(sample) / len(sample) if sample else 0.0


def mean_abs_diff(a: bytes, b: bytes) -> float:
    """How different two luma samples are (inf when they cannot be compared)."""
    if len(a) != len(b) or not a:
        return math.inf
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def rms_dbfs(samples: Sequence[float]) -> float:
    """Level of float samples (full scale 1.0) in dBFS; -inf for digital silence."""
    if not samples:
        return -math.inf
    power = math.fsum(s * s for s in samples) / len(samples)
    return 10 * math.log10(power) if power > 0 else -math.inf


class VideoAnalyser:
    """Black and frozen verdicts from one input's keyframes."""

    def __init__(self) -> None:
        self._previous: bytes | None = None

    def analyse(self, packet: MediaPacket) -> tuple[bool, bool] | None:
        """(black, frozen) for a keyframe; None when it does not decode."""
        ctx = av.CodecContext.create("h264", "r")
        ctx.extradata = packet.config
        try:
            frames = list(ctx.decode(av.Packet(packet.data))) or list(ctx.decode(None))
        except av.FFmpegError:
            return None
        if not frames:
            return None
        frame = frames[0]
        plane = frame.planes[0]
        step = sample_step(frame.width, frame.height)
        sample = sample_luma(bytes(plane), frame.width, frame.height, plane.line_size, step)
        frozen = self._previous is not None and mean_abs_diff(sample, self._previous) < FROZEN_DIFF
        self._previous = sample
        return is_black(sample), frozen


class AudioAnalyser:
    """The level of one input's AAC audio, decoded in batches with a decoder that persists."""

    def __init__(self) -> None:
        self._ctx: Any = None
        self._config = b""

    def level_dbfs(self, packets: Sequence[MediaPacket]) -> float | None:
        samples = array("f")
        for packet in packets:
            if self._ctx is None or packet.config != self._config:
                self._ctx = av.CodecContext.create("aac", "r")
                self._ctx.extradata = packet.config
                self._config = packet.config
            try:
                frames = self._ctx.decode(av.Packet(packet.data))
            except av.FFmpegError:
                continue
            for frame in frames:
                if frame.format.name not in ("fltp", "flt"):
                    return None
                width = frame.samples * (1 if frame.format.is_planar else len(frame.layout.channels))
                for plane in frame.planes:
                    samples.frombytes(bytes(plane)[: width * 4])
        if not samples:
            return None
        return rms_dbfs(samples)
