"""What a destination recorded across failovers: which input each frame and each stretch of audio came
from, where the switches are in the recording, and how the timeline relates to the wall clock.

Inputs are told apart by content: the primary publishes ``testsrc2`` and a 440 Hz tone, the backup
``smptebars`` and 880 Hz, the slate is a grey card with silence. Video frames are classified by their
difference to reference pictures (decoded with PyAV); audio by Goertzel power at the two tones over
50 ms windows of the audio resampled to 8 kHz mono.
"""

from __future__ import annotations

import math
import subprocess
from array import array
from dataclasses import dataclass
from pathlib import Path

import av

from services.router.content import dark_ratio, mean_abs_diff, sample_luma
from services.router.slate import _card

PRIMARY_TONE, BACKUP_TONE = 440, 880
STEP = 4  # luma subsampling
MATCH = 15.0  # mean absolute luma difference under which a frame matches a reference picture
WINDOW_S = 0.05
RATE = 8000


@dataclass(frozen=True)
class Frame:
    dts: float  # seconds, in the recording
    keyframe: bool
    label: str  # "primary", "backup", "slate" or "black"


@dataclass(frozen=True)
class Run:
    label: str
    start: float
    end: float
    first: int  # index of its first frame (video) or window (audio)

    @property
    def length(self) -> float:
        return self.end - self.start


def _bars(width: int, height: int) -> bytes:
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"smptebars=size={width}x{height}",
         "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return sample_luma(raw, width, height, width, STEP)


def _slate(width: int, height: int) -> bytes:
    plane = _card(width, height).planes[0]
    return sample_luma(bytes(plane), width, height, plane.line_size, STEP)


def video_frames(path: Path) -> list[Frame]:
    """Every video frame in decode order with its DTS, keyframe flag and the source it shows."""
    out: list[Frame] = []
    refs: dict[str, bytes] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.dts is None or packet.size == 0:
                continue
            for frame in packet.decode():
                plane = frame.planes[0]
                sample = sample_luma(bytes(plane), frame.width, frame.height, plane.line_size, STEP)
                if not refs:
                    refs = {
                        "backup": _bars(frame.width, frame.height),
                        "slate": _slate(frame.width, frame.height),
                    }
                label = "primary"
                if dark_ratio(sample) >= 0.98:
                    label = "black"
                else:
                    for name, ref in refs.items():
                        if mean_abs_diff(sample, ref) < MATCH:
                            label = name
                out.append(Frame(float(packet.dts * stream.time_base), packet.is_keyframe, label))
    return out


def _goertzel(samples: array, start: int, count: int, freq: float) -> float:
    coeff = 2 * math.cos(2 * math.pi * freq / RATE)
    s1 = s2 = 0.0
    for x in samples[start : start + count]:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def audio_windows(path: Path) -> list[tuple[float, str]]:
    """(start time, "440" | "880" | "silence" | "other") for every 50 ms of the audio track."""
    samples = array("h")
    first: float | None = None
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            if first is None and frame.pts is not None:
                first = float(frame.pts * stream.time_base)
            for out in resampler.resample(frame):
                samples.frombytes(bytes(out.planes[0])[: out.samples * 2])
    n = round(WINDOW_S * RATE)
    windows: list[tuple[float, str]] = []
    for i in range(0, len(samples) - n, n):
        energy = sum(x * x for x in samples[i : i + n]) / n
        if energy < 100**2 / 2:  # about -50 dBFS
            label = "silence"
        else:
            low, high = (_goertzel(samples, i, n, f) for f in (PRIMARY_TONE, BACKUP_TONE))
            total = energy * n * n / 2
            label = "440" if low > 0.3 * total else "880" if high > 0.3 * total else "other"
        windows.append(((first or 0.0) + i / RATE, label))
    return windows


def runs(items: list[tuple[float, str]], min_length: float) -> list[Run]:
    """Consecutive equal labels as runs; runs shorter than ``min_length`` (transitions) are dropped
    and their neighbours merged."""
    raw: list[Run] = []
    for index, (t, label) in enumerate(items):
        if raw and raw[-1].label == label:
            raw[-1] = Run(label, raw[-1].start, t, raw[-1].first)
        else:
            raw.append(Run(label, t, t, index))
    kept: list[Run] = []
    for run in raw:
        if run.length < min_length:
            continue
        if kept and kept[-1].label == run.label:
            kept[-1] = Run(run.label, kept[-1].start, run.end, kept[-1].first)
        else:
            kept.append(run)
    return kept


def video_runs(frames: list[Frame], min_length: float = 0.2) -> list[Run]:
    return runs([(f.dts, f.label) for f in frames], min_length)


def audio_runs(windows: list[tuple[float, str]], min_length: float = 0.3) -> list[Run]:
    return runs(windows, min_length)


def last_video_timestamp(path: Path) -> float:
    """The newest video timestamp (s) in an FLV that is still being written (a partial tag is ignored)."""
    data = path.read_bytes()
    if data[:3] != b"FLV":
        raise AssertionError(f"{path} is not an FLV file")
    pos = int.from_bytes(data[5:9], "big") + 4
    last = 0.0
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        if pos + 11 + size > len(data):
            break
        if data[pos] & 0x1F == 9:
            ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
            last = max(last, ts / 1000)
        pos += 11 + size + 4
    return last
