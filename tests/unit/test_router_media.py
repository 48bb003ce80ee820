"""The router's media helpers: content measures and analysers, the slate, the warm GOP cache."""

from __future__ import annotations

import itertools
import math

import pytest

from services.router.content import (
    AudioAnalyser,
    VideoAnalyser,
    dark_ratio,
    is_black,
    mean_abs_diff,
    rms_dbfs,
    sample_luma,
    sample_step,
)
from services.router.gop_cache import GopCache
from services.router.slate import SlateClock, SlateParams, encode_slate
from shared.messages import MediaPacket


@pytest.mark.parametrize(
    ("pixels", "black"),
    [
        (bytes([16]) * 1000, True),  # limited-range black
        (bytes([40]) * 1000, True),  # very dark grey still counts
        (bytes([16]) * 970 + bytes([200]) * 30, False),  # 3% bright: over the 2% allowed
        (bytes([16]) * 985 + bytes([200]) * 15, True),
        (bytes([41]) * 1000, False),
        (bytes([16]) * 900 + bytes([235]) * 100, False),  # a dark scene with a bright caption
        (b"", False),
    ],
)
def test_black_is_almost_every_pixel_dark(pixels: bytes, black: bool) -> None:
    assert is_black(pixels) is black


def test_measures() -> None:
    assert dark_ratio(bytes([0, 255, 0, 255])) == 0.5
    assert mean_abs_diff(bytes([10, 20]), bytes([12, 16])) == 3.0
    assert mean_abs_diff(b"ab", b"abc") == math.inf
    assert rms_dbfs([0.0] * 10) == -math.inf
    assert rms_dbfs([1.0, -1.0]) == pytest.approx(0.0)
    assert rms_dbfs([0.001] * 4) == pytest.approx(-60.0)
    plane = bytes(range(16)) * 4  # 4 rows of 16 with a line size of 16
    assert sample_luma(plane, 8, 4, 16, 2) == bytes([0, 2, 4, 6, 0, 2, 4, 6])
    assert sample_step(320, 240) == 2 and sample_step(1920, 1080) == 11


def test_the_slate_is_neither_black_nor_silent_picture_and_silent_sound() -> None:
    slate = encode_slate(SlateParams(320, 240, 30, 48_000, 1))
    video = VideoAnalyser()
    assert video.analyse(slate.video[0]) == (False, False)
    assert video.analyse(slate.video[0]) == (False, True), "the same picture again: frozen"
    level = AudioAnalyser().level_dbfs(slate.audio)
    assert level is not None and level < -60


def test_slate_matches_the_program_and_loops_with_fresh_timestamps() -> None:
    params = SlateParams(320, 240, 25, 44_100, 2)
    slate = encode_slate(params)
    assert len(slate.video) == 25 and slate.video[0].keyframe and slate.video[0].config
    assert SlateParams.of_program(slate.video[0].config, 3600, slate.audio[0].config) == params
    clock = SlateClock(slate)
    assert clock.at_keyframe
    first = clock.due(0.0)
    assert [p.kind for p in first] == ["video", "audio"] and first[0].keyframe
    packets = first + clock.due(2.5)
    videos = [p for p in packets if p.kind == "video"]
    audios = [p for p in packets if p.kind == "audio"]
    assert len(videos) == 63 and [p.dts for p in videos[:3]] == [0, 3600, 7200]
    assert [p.keyframe for p in videos].count(True) == 3, "every loop starts at its IDR"
    assert len(audios) == 108 and all(b.dts > a.dts for a, b in itertools.pairwise(audios))
    assert not clock.at_keyframe
    assert 2.5 < clock.next_due_s() <= 2.5 + 1 / 25


@pytest.mark.parametrize(
    ("frame_ticks", "fps"),
    [(3000, 30), (2970, 30), (3060, 30), (3600, 25), (3003, 30), (1500, 60), (6000, 15)],
)
def test_slate_frame_rate_snaps_to_a_common_rate(frame_ticks: int, fps: int) -> None:
    avcc = encode_slate(SlateParams(160, 120, 30)).video[0].config
    params = SlateParams.of_program(avcc, frame_ticks)
    assert params is not None and params.fps == fps and (params.width, params.height) == (160, 120)
    assert params.sample_rate == 0


def v(dts: int, key: bool = False, size: int = 10) -> MediaPacket:
    return MediaPacket("video", "h264", dts, dts, key, b"v" * size, b"cfg" if key else b"", "in_b")


def test_gop_cache_keeps_the_latest_gop_while_it_is_fresh() -> None:
    cache = GopCache(max_bytes=100)
    cache.add(v(0), 0.0)  # nothing before a keyframe
    assert len(cache) == 0
    cache.add(v(3000, key=True), 1.0)
    cache.add(MediaPacket("audio", "aac", 3100, 3100, True, b"a", b"asc", "in_b"), 1.01)
    cache.add(MediaPacket("data", "amf0", 3100, 3100, False, b"m", b"", "in_b"), 1.01)
    cache.add(v(6000), 1.03)
    assert [p.dts for p, _ in cache.replay(2.0, max_age=4.0)] == [3000, 3100, 6000]
    assert cache.replay(5.5, max_age=4.0) == [], "too old to start the program from"
    cache.add(v(9000, key=True), 1.5)
    assert [p.dts for p, _ in cache.replay(2.0, max_age=4.0)] == [9000]
    for i in range(10):
        cache.add(v(12000 + i), 1.6)
    assert len(cache) == 0, "an unusually long GOP is dropped rather than kept without bound"
