"""The transcode core with PyAV: synthetic H.264 + AAC in, renditions out with keyframes on a fixed grid,
increasing DTS, the profile's size, audio re-encoded, continuity across a program switch (new config)."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise

import av
import msgspec
import pytest

from services.transcode import engine, profiles
from services.transcode.profiles import Profile
from services.transcode.service import needed_profiles
from shared.messages import EventSpec, MediaPacket, OutputSpec

TB = Fraction(1, 90_000)
SMALL = Profile(
    name="t-180p",
    width=320,
    height=180,
    fps=30,
    video_bitrate_kbps=300,
    keyframe_interval_s=1.0,
    preset="ultrafast",
)


def h264_source(
    frames: int, width: int, height: int, start_pts: int = 0, keyint: int = 45
) -> list[MediaPacket]:
    """A moving pattern encoded as a program would carry it (length-prefixed, avcC on keyframes)."""
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base, ctx.framerate = TB, Fraction(30, 1)
    ctx.options = {"preset": "ultrafast", "x264-params": f"keyint={keyint}:repeat-headers=1:bframes=0"}
    ctx.open()
    out: list[MediaPacket] = []
    config = b""

    def take(packets: list[av.Packet]) -> None:
        nonlocal config
        for pkt in packets:
            data, found = engine._annexb_to_canonical(bytes(pkt))
            config = found or config
            dts = start_pts + int(pkt.dts)
            out.append(MediaPacket("video", "h264", dts, start_pts + int(pkt.pts), pkt.is_keyframe, data,
                                   config if pkt.is_keyframe else b""))  # fmt: skip

    for i in range(frames):
        frame = av.VideoFrame(width, height, "yuv420p")
        for k, plane in enumerate(frame.planes):
            plane.update(bytes(((x * 7 + i * 5 + k * 40) & 0xFF) for x in range(plane.buffer_size)))
        frame.pts, frame.time_base = i * 3000, TB
        take(list(ctx.encode(frame)))
    take(list(ctx.encode(None)))
    return out


def aac_source(frames: int, start_pts: int = 0) -> list[MediaPacket]:
    ctx = av.CodecContext.create("aac", "w")
    ctx.sample_rate, ctx.layout, ctx.format, ctx.bit_rate = 44_100, "stereo", "fltp", 96_000
    ctx.time_base = Fraction(1, 44_100)
    ctx.open()
    out = []
    for i in range(frames):
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate, frame.pts, frame.time_base = 44_100, i * 1024, Fraction(1, 44_100)
        for pkt in ctx.encode(frame):
            if pkt.pts is not None and pkt.pts >= 0:
                ts = start_pts + int(pkt.pts) * 90_000 // 44_100
                out.append(MediaPacket("audio", "aac", ts, ts, False, bytes(pkt), bytes(ctx.extradata)))
    return out


def run(transcoder: engine.EventTranscoder, packets: list[MediaPacket]) -> list[tuple[str, MediaPacket]]:
    out: list[tuple[str, MediaPacket]] = []
    for packet in sorted(packets, key=lambda p: p.dts):
        out += transcoder.feed(packet)
    return out


def decoded_sizes(packets: list[MediaPacket]) -> set[tuple[int, int]]:
    sizes: set[tuple[int, int]] = set()
    ctx = None
    for p in packets:
        if p.config:
            ctx = av.CodecContext.create("h264", "r")
            ctx.extradata = p.config
        assert ctx is not None
        for frame in ctx.decode(av.Packet(p.data)):
            sizes.add((frame.width, frame.height))
    return sizes


@pytest.fixture(scope="module")
def program() -> list[MediaPacket]:
    return h264_source(150, 640, 360) + aac_source(215)


def test_keyframes_on_a_fixed_grid_and_dts_increasing(program: list[MediaPacket]) -> None:
    out = run(engine.EventTranscoder((SMALL,)), program)
    video = [p for name, p in out if name == SMALL.name and p.kind == "video"]
    assert len(video) >= 140
    keyframes = [p.pts for p in video if p.keyframe]
    assert keyframes == [i * 90_000 for i in range(len(keyframes))] and len(keyframes) == 5
    assert all(p.config for p in video if p.keyframe)
    dts = [p.dts for p in video]
    assert all(b > a for a, b in pairwise(dts))
    assert decoded_sizes(video) == {(320, 180)}
    audio = [p for _, p in out if p.kind == "audio"]
    assert len(audio) > 200 and all(p.config for p in audio)
    assert all(b.dts > a.dts for a, b in pairwise(audio))
    assert abs(audio[0].dts - video[0].dts) < 9_000  # in sync within 100 ms


def test_two_profiles_two_renditions_then_one(program: list[MediaPacket]) -> None:
    other = msgspec.structs.replace(SMALL, name="t-other", video_bitrate_kbps=200, keyframe_interval_s=2.0)
    t = engine.EventTranscoder((SMALL, other))
    out = run(t, program[:60])
    assert {name for name, _ in out} == {SMALL.name, other.name}
    assert t.running_profiles() == (SMALL.name, other.name)
    t.set_profiles((other,))
    assert t.running_profiles() == (other.name,)
    t.set_profiles(())
    assert t.feed(program[70]) == [] and t.running_profiles() == ()


def test_a_switch_in_the_program_keeps_the_rendition_going() -> None:
    first = h264_source(60, 640, 360)
    second = h264_source(60, 480, 270, start_pts=60 * 3000)  # another input: new avcC, same timeline
    out = run(engine.EventTranscoder((SMALL,)), first + second)
    video = [p for _, p in out]
    assert len(video) >= 115
    dts = [p.dts for p in video]
    assert all(b > a for a, b in pairwise(dts))
    assert [p.pts for p in video if p.keyframe] == [0, 90_000, 180_000, 270_000][
        : sum(p.keyframe for p in video)
    ]
    assert decoded_sizes(video) == {(320, 180)}


def _event(state: str, outputs: list[tuple[str, bool]]) -> EventSpec:
    used = tuple(profiles.BUILTIN[p] for p in sorted({p for p, _ in outputs}) if p != profiles.PASSTHROUGH)
    return EventSpec(
        tenant_id="tn",
        id="ev",
        name="e",
        state=state,  # type: ignore[arg-type]
        outputs=tuple(
            OutputSpec(id=f"o{i}", name="o", url="rtmp://h/a/k", enabled=on, profile=p)
            for i, (p, on) in enumerate(outputs)
        ),
        profiles=used,
    )


NEEDED = [
    ("live", [("passthrough", True)], []),
    ("live", [("social-720p30", True), ("social-720p30", True)], ["social-720p30"]),
    ("live", [("social-720p30", False), ("rollback-720p30", True)], ["rollback-720p30"]),
    ("idle", [("social-720p30", True)], []),
    ("stopped", [("social-720p30", True)], []),
]


@pytest.mark.parametrize(("state", "outputs", "expected"), NEEDED)
def test_encodes_only_what_an_enabled_output_of_a_live_event_needs(
    state: str, outputs: list[tuple[str, bool]], expected: list[str]
) -> None:
    assert [p.name for p in needed_profiles(_event(state, outputs))] == expected


def test_keyframes_follow_program_time_from_a_25_fps_source() -> None:
    """keyint counts frames; at 25 fps 60 frames would be 2.4 s. Keyframes are forced by program time."""
    two_s = msgspec.structs.replace(SMALL, keyframe_interval_s=2.0)
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = 320, 240, "yuv420p"
    ctx.time_base, ctx.framerate = TB, Fraction(25, 1)
    ctx.options = {"preset": "ultrafast", "x264-params": "keyint=50:repeat-headers=1:bframes=0"}
    ctx.open()
    packets: list[MediaPacket] = []
    config = b""
    for i in range(175):  # 7 s
        frame = av.VideoFrame(320, 240, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes(((x * 3 + i * 11) & 0xFF) for x in range(plane.buffer_size)))
        frame.pts, frame.time_base = i * 3600, TB
        for pkt in ctx.encode(frame):
            data, found = engine._annexb_to_canonical(bytes(pkt))
            config = found or config
            key = bool(pkt.is_keyframe)
            packets.append(
                MediaPacket("video", "h264", int(pkt.dts), int(pkt.pts), key, data, config if key else b"")
            )
    out = run(engine.EventTranscoder((two_s,)), packets)
    assert [p.pts for _, p in out if p.keyframe] == [0, 180_000, 360_000, 540_000]
