"""The judge: what a destination recorded, measured with ffprobe and decoded with ffmpeg.

Timestamps are reported in seconds. `probe_packets` keys streams by codec type ("video", "audio") for the
first stream of each type, and by "<type>:<index>" for any further ones.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any


@dataclass
class StreamInfo:
    index: int
    codec_type: str
    codec: str | None
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    packet_count: int = 0
    keyframe_count: int = 0
    first_dts: float | None = None
    last_dts: float | None = None
    dts: list[float] = field(default_factory=list)
    keyframe_times: list[float] = field(default_factory=list)
    missing_dts: int = 0  # packets without a DTS
    first_is_keyframe: bool = False
    max_dts_gap: float = 0.0
    dts_strictly_increasing: bool = True
    first_non_increasing: tuple[int, float, float] | None = None  # (packet number, previous dts, dts)
    start: float | None = None  # earliest pts (dts when pts is missing)
    end: float | None = None  # latest pts + packet duration

    def __getitem__(self, key: str) -> Any:
        """Mapping-style access too: `info["video"]["keyframe_count"]`."""
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    @property
    def duration(self) -> float:
        if self.start is None or self.end is None:
            return 0.0
        return self.end - self.start


def _ffprobe_json(path: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", *args, "-of", "json", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise AssertionError(f"ffprobe could not read {path}: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout or "{}")
    return result


def _int(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return None


def probe_packets(path: Path) -> dict[str, StreamInfo]:
    """Per-stream packet counts, keyframes and DTS behaviour of a media file."""
    data = _ffprobe_json(
        path,
        "-show_entries", "packet=stream_index,codec_type,dts,pts,flags,duration",
        "-show_entries", "stream=index,codec_type,codec_name,width,height,sample_rate,time_base",
    )  # fmt: skip
    by_index: dict[int, StreamInfo] = {}
    time_bases: dict[int, Fraction] = {}
    for s in data.get("streams", []):
        idx = int(s["index"])
        by_index[idx] = StreamInfo(
            index=idx,
            codec_type=str(s.get("codec_type", "unknown")),
            codec=s.get("codec_name"),
            width=_int(s.get("width")),
            height=_int(s.get("height")),
            sample_rate=_int(s.get("sample_rate")),
        )
        time_bases[idx] = Fraction(s.get("time_base") or "1/1000")
    last_raw: dict[int, int] = {}
    for pkt in data.get("packets", []):
        idx = int(pkt["stream_index"])
        info = by_index.get(idx)
        if info is None:
            continue
        tb = time_bases[idx]
        key = "K" in str(pkt.get("flags", ""))
        info.packet_count += 1
        if info.packet_count == 1:
            info.first_is_keyframe = key
        dts_raw, pts_raw, dur_raw = _int(pkt.get("dts")), _int(pkt.get("pts")), _int(pkt.get("duration"))
        ts_raw = pts_raw if pts_raw is not None else dts_raw
        if key:
            info.keyframe_count += 1
            if ts_raw is not None:
                info.keyframe_times.append(float(ts_raw * tb))
        if ts_raw is not None:
            t = float(ts_raw * tb)
            info.start = t if info.start is None else min(info.start, t)
            end = float((ts_raw + (dur_raw or 0)) * tb)
            info.end = end if info.end is None else max(info.end, end)
        if dts_raw is None:
            info.missing_dts += 1
            continue
        dts = float(dts_raw * tb)
        previous = last_raw.get(idx)
        if previous is not None:
            info.max_dts_gap = max(info.max_dts_gap, float((dts_raw - previous) * tb))
            if dts_raw <= previous and info.dts_strictly_increasing:
                info.dts_strictly_increasing = False
                info.first_non_increasing = (info.packet_count, float(previous * tb), dts)
        last_raw[idx] = dts_raw
        if info.first_dts is None:
            info.first_dts = dts
        info.last_dts = dts
        info.dts.append(dts)
    streams: dict[str, StreamInfo] = {}
    for info in by_index.values():
        name = info.codec_type if info.codec_type not in streams else f"{info.codec_type}:{info.index}"
        streams[name] = info
    return streams


def decode_errors(path: Path) -> str:
    """Everything `ffmpeg -v error` says while decoding the whole file; empty when it decodes cleanly."""
    done = subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-i", str(path), "-f", "null", "-"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    text = done.stderr.strip()
    if done.returncode != 0 and not text:
        text = f"ffmpeg exited with {done.returncode}"
    return text


def duration(path: Path) -> float:
    """Media time spanned by the packets of all streams (first timestamp to the end of the last packet).

    Counted from packets, not the container header: a live FLV's header carries no trustworthy duration.
    """
    return media_span(probe_packets(path))


def media_span(streams: dict[str, StreamInfo]) -> float:
    starts = [s.start for s in streams.values() if s.start is not None]
    ends = [s.end for s in streams.values() if s.end is not None]
    if not starts or not ends:
        return 0.0
    return max(ends) - min(starts)


def keyframe_times(path: Path) -> list[float]:
    """Presentation times (seconds) of the video keyframes."""
    video = probe_packets(path).get("video")
    return list(video.keyframe_times) if video else []


def assert_valid_recording(
    path: Path,
    *,
    min_duration: float | None = None,
    max_duration: float | None = None,
    max_dts_gap: float | None = None,
    require_audio: bool = True,
) -> dict[str, StreamInfo]:
    """Fail, saying every problem found, unless `path` is a clean recording; return its probe.

    Clean: video (and audio) present, the first video packet a keyframe, DTS strictly increasing per
    stream, no decode errors, and the duration within the given bounds.
    """
    problems: list[str] = []
    if not path.exists() or path.stat().st_size == 0:
        raise AssertionError(f"{path}: missing or empty")
    streams = probe_packets(path)
    wanted = ("video", "audio") if require_audio else ("video",)
    for kind in wanted:
        info = streams.get(kind)
        if info is None or info.packet_count == 0:
            problems.append(f"no {kind} packets")
    for name, info in streams.items():
        if info.missing_dts:
            problems.append(f"{name}: {info.missing_dts} packets without DTS")
        if not info.dts_strictly_increasing and info.first_non_increasing:
            n, prev, cur = info.first_non_increasing
            problems.append(
                f"{name}: DTS not strictly increasing at packet {n} ({prev:.3f}s then {cur:.3f}s)"
            )
        if max_dts_gap is not None and info.max_dts_gap > max_dts_gap:
            problems.append(f"{name}: largest DTS gap {info.max_dts_gap:.3f}s exceeds {max_dts_gap:.3f}s")
    video = streams.get("video")
    if video and video.packet_count and not video.first_is_keyframe:
        problems.append("video: first packet is not a keyframe")
    total = media_span(streams)
    if min_duration is not None and total < min_duration:
        problems.append(f"duration {total:.3f}s is shorter than {min_duration:.3f}s")
    if max_duration is not None and total > max_duration:
        problems.append(f"duration {total:.3f}s is longer than {max_duration:.3f}s")
    errors = decode_errors(path)
    if errors:
        lines = errors.splitlines()
        problems.append(f"decode errors ({len(lines)} lines): " + " | ".join(lines[:5]))
    if problems:
        summary = ", ".join(f"{k}={v.codec} {v.packet_count} pkts" for k, v in streams.items())
        raise AssertionError(f"{path} is not a valid recording ({summary}):\n  - " + "\n  - ".join(problems))
    return streams
