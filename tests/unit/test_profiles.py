"""Encoding profiles: the built-ins are valid, and each bad value is refused naming its field."""

from __future__ import annotations

import msgspec
import pytest

from services.transcode import profiles
from services.transcode.profiles import Profile, ProfileError

GOOD = Profile(name="mine", width=1280, height=720, fps=30, video_bitrate_kbps=3000, keyframe_interval_s=2.0)

BAD = [
    ({"name": "Has Space"}, "name"),
    ({"name": "passthrough"}, "name"),
    ({"width": 0}, "width"),
    ({"width": 1281}, "width"),
    ({"height": 4320}, "height"),
    ({"fps": 0}, "fps"),
    ({"fps": 120}, "fps"),
    ({"video_bitrate_kbps": 200_000}, "video_bitrate_kbps"),
    ({"video_bitrate_kbps": 50}, "video_bitrate_kbps"),
    ({"keyframe_interval_s": 9.0}, "keyframe_interval_s"),
    ({"keyframe_interval_s": 0.1}, "keyframe_interval_s"),
    ({"fps": 25, "keyframe_interval_s": 1.02}, "keyframe_interval_s"),
    ({"audio_bitrate_kbps": 1000}, "audio_bitrate_kbps"),
    ({"channels": 6}, "channels"),
    ({"sample_rate": 22_050}, "sample_rate"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
def test_bad_values_are_refused_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(ProfileError) as caught:
        profiles.validate(msgspec.structs.replace(GOOD, **change))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


GOOD_EDGES = [
    {},
    {"keyframe_interval_s": 8.0},
    {"video_bitrate_kbps": 50_000},
    {"fps": 25, "keyframe_interval_s": 0.6},
    {"rate_control": "vbr", "channels": 1, "sample_rate": 44_100},
]


@pytest.mark.parametrize("change", GOOD_EDGES)
def test_values_in_range_pass(change: dict[str, object]) -> None:
    assert profiles.validate(msgspec.structs.replace(GOOD, **change))


def test_builtins() -> None:
    assert set(profiles.BUILTIN) == {"passthrough", "social-1080p30", "social-720p30", "rollback-720p30"}
    for name, p in profiles.BUILTIN.items():
        if name != profiles.PASSTHROUGH:
            assert profiles.validate(p) is p
            assert profiles.gop_frames(p) == 60  # 2 s at 30 fps
    r = profiles.BUILTIN["rollback-720p30"]
    assert (r.width, r.height, r.fps, r.video_bitrate_kbps, r.audio_bitrate_kbps) == (
        1280,
        720,
        30,
        3000,
        128,
    )
    assert 5000 <= profiles.BUILTIN["social-1080p30"].video_bitrate_kbps <= 6000


X264 = [
    ("cbr", {"keyint=60", "min-keyint=60", "scenecut=0", "nal-hrd=cbr", "vbv-maxrate=3000", "vbv-bufsize=3000"}),
    ("vbr", {"keyint=60", "min-keyint=60", "scenecut=0", "vbv-maxrate=4500", "bitrate=3000"}),
]  # fmt: skip


@pytest.mark.parametrize(("rc", "expected"), X264)
def test_x264_params_fix_keyframes_and_cap_the_rate(rc: str, expected: set[str]) -> None:
    params = set(profiles.x264_params(msgspec.structs.replace(GOOD, rate_control=rc)).split(":"))
    assert expected <= params
    assert ("nal-hrd=cbr" in params) == (rc == "cbr")
