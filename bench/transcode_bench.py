"""Transcode benchmark: CPU per profile for a 1080p30 source, Fanout's shared encode against one ffmpeg
per output doing the same encode.

A 1080p30 H.264 (6 Mbit/s) + AAC clip is made once with ffmpeg. Fanout's side runs the transcode core
(``EventTranscoder``: decode once, scale once, encode once per profile) over the clip's packets as the
program would carry them, in this process, and counts this process's CPU seconds. Outputs sharing a
profile share that one encode (the rendition is published once and fanned out like the program), so
N outputs cost one encode; the fan-out itself is measured by bench/fanout_bench.py. The common approach
runs one ffmpeg per output (decode + scale + encode each), counted with RUSAGE_CHILDREN. CPU % is CPU
seconds per second of media (100 % = one core kept busy in real time).

    .venv/bin/python bench/transcode_bench.py --seconds 6 --outputs 1,5
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402

from services.transcode import profiles  # noqa: E402
from services.transcode.engine import EventTranscoder  # noqa: E402
from shared.messages import TIMEBASE, MediaPacket  # noqa: E402


def make_clip(path: Path, seconds: int) -> None:
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
         "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-b:v", "6M", "-maxrate", "6M",
         "-bufsize", "6M", "-g", "60", "-bf", "0", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(path)],
        check=True,
    )  # fmt: skip


def program_packets(path: Path) -> list[MediaPacket]:
    """The clip as the router's program carries it: length-prefixed H.264 with avcC, raw AAC with ASC."""
    out: list[MediaPacket] = []
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        configs = {s.index: bytes(s.codec_context.extradata or b"") for s in streams}
        for pkt in container.demux(*streams):
            if pkt.dts is None or pkt.pts is None or pkt.size == 0:
                continue
            tb = pkt.time_base
            dts, pts = int(pkt.dts * tb * TIMEBASE), int(pkt.pts * tb * TIMEBASE)
            config = configs[pkt.stream.index]
            if pkt.stream.type == "video":
                key = bool(pkt.is_keyframe)
                out.append(MediaPacket("video", "h264", dts, pts, key, bytes(pkt), config if key else b""))
            else:
                out.append(MediaPacket("audio", "aac", dts, pts, False, bytes(pkt), config))
    return sorted(out, key=lambda p: p.dts)


def fanout_cpu(packets: list[MediaPacket], profile: profiles.Profile) -> float:
    transcoder = EventTranscoder((profile,))
    start = time.process_time()
    produced = 0
    for packet in packets:
        produced += len(transcoder.feed(packet))
    assert produced > 0
    return time.process_time() - start


def ffmpeg_cpu(clip: Path, profile: profiles.Profile, outputs: int) -> float:
    """CPU seconds of ``outputs`` ffmpeg processes, each decoding, scaling and encoding the clip."""
    gop = profiles.gop_frames(profile)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(outputs):
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", str(clip),
             "-vf", f"scale={profile.width}:{profile.height},fps={profile.fps}",
             "-c:v", "libx264", "-preset", profile.preset, "-profile:v", profile.h264_profile,
             "-b:v", f"{profile.video_bitrate_kbps}k", "-x264-params", profiles.x264_params(profile),
             "-g", str(gop), "-c:a", "aac", "-b:a", f"{profile.audio_bitrate_kbps}k",
             "-ar", str(profile.sample_rate), "-ac", str(profile.channels), "-f", "flv", "-y", "/dev/null"],
            check=True,
        )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--outputs", default="1,5")
    parser.add_argument("--profiles", default="social-1080p30,social-720p30,rollback-720p30")
    args = parser.parse_args()
    counts = [int(n) for n in args.outputs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "source-1080p30.mp4"
        make_clip(clip, args.seconds)
        packets = program_packets(clip)
        media_s = float(args.seconds)
        print(
            f"source: 1920x1080 30 fps 6 Mbit/s H.264 + AAC, {media_s:g} s; CPU % = CPU s per media s x 100"
        )
        print(
            "| profile | N outputs | Fanout CPU % (one shared encode) | one ffmpeg per output CPU % | ratio |"
        )
        print("|---|---|---|---|---|")
        for name in args.profiles.split(","):
            profile = profiles.BUILTIN[name]
            ours = fanout_cpu(packets, profile)
            for n in counts:
                theirs = ffmpeg_cpu(clip, profile, n)
                print(
                    f"| {name} | {n} | {100 * ours / media_s:.0f} | {100 * theirs / media_s:.0f} | "
                    f"{ours / theirs:.2f}x |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
