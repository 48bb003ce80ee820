"""Encoding profiles: what a rendition of the program looks like. Pure: no I/O, no PyAV.

``passthrough`` is the program as it arrives. Every other profile is encoded once per event by the
transcode service and shared by every output that names it. Keyframes are deterministic: the GOP is
``fps * keyframe_interval_s`` frames and scene-cut keyframes are off, so every rendition of a profile
has its keyframes at the same instants.
"""

from __future__ import annotations

import re

from shared.messages import ProfileSpec

PASSTHROUGH = "passthrough"
ROLLBACK = "rollback-720p30"

MAX_GOP_S = 8.0
MAX_VIDEO_KBPS = 50_000
MAX_AUDIO_KBPS = 512
MAX_WIDTH, MAX_HEIGHT = 3840, 2160
SAMPLE_RATES = (32_000, 44_100, 48_000)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")


class ProfileError(ValueError):
    """A profile value out of range; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


Profile = ProfileSpec  # the bus carries profiles in EventSpec, so the struct lives in shared.messages


def gop_frames(p: Profile) -> int:
    return round(p.fps * p.keyframe_interval_s)


def validate(p: Profile) -> Profile:
    """Return the profile when every value is in range; raise ProfileError naming the first bad field."""
    if not _NAME.match(p.name):
        raise ProfileError("name", "lowercase letters, digits, '-' and '_', at most 48 characters")
    if p.name == PASSTHROUGH:
        raise ProfileError("name", "passthrough is built in")
    for field, value, top in (("width", p.width, MAX_WIDTH), ("height", p.height, MAX_HEIGHT)):
        if not 16 <= value <= top:
            raise ProfileError(field, f"must be between 16 and {top}, got {value}")
        if value % 2:
            raise ProfileError(field, f"must be even (4:2:0 chroma), got {value}")
    if not 1 <= p.fps <= 60:
        raise ProfileError("fps", f"must be between 1 and 60, got {p.fps}")
    if not 100 <= p.video_bitrate_kbps <= MAX_VIDEO_KBPS:
        raise ProfileError(
            "video_bitrate_kbps",
            f"must be between 100 and {MAX_VIDEO_KBPS} (50 Mbit/s), got {p.video_bitrate_kbps}",
        )
    if not 0.5 <= p.keyframe_interval_s <= MAX_GOP_S:
        raise ProfileError(
            "keyframe_interval_s", f"must be between 0.5 and {MAX_GOP_S:g} s, got {p.keyframe_interval_s:g}"
        )
    if abs(p.fps * p.keyframe_interval_s - gop_frames(p)) > 1e-6:
        raise ProfileError("keyframe_interval_s", "must be a whole number of frames at the profile's fps")
    if not 32 <= p.audio_bitrate_kbps <= MAX_AUDIO_KBPS:
        raise ProfileError(
            "audio_bitrate_kbps", f"must be between 32 and {MAX_AUDIO_KBPS}, got {p.audio_bitrate_kbps}"
        )
    if p.channels not in (1, 2):
        raise ProfileError("channels", f"must be 1 or 2, got {p.channels}")
    if p.sample_rate not in SAMPLE_RATES:
        raise ProfileError(
            "sample_rate", f"must be one of {', '.join(map(str, SAMPLE_RATES))}, got {p.sample_rate}"
        )
    return p


BUILTIN: dict[str, Profile] = {
    PASSTHROUGH: Profile(name=PASSTHROUGH),
    "social-1080p30": Profile(
        name="social-1080p30",
        width=1920,
        height=1080,
        fps=30,
        video_bitrate_kbps=5500,
        keyframe_interval_s=2.0,
    ),
    "social-720p30": Profile(
        name="social-720p30", width=1280, height=720, fps=30, video_bitrate_kbps=3000, keyframe_interval_s=2.0
    ),
    ROLLBACK: Profile(
        name=ROLLBACK,
        width=1280,
        height=720,
        fps=30,
        video_bitrate_kbps=3000,
        keyframe_interval_s=2.0,
        h264_profile="main",
        audio_bitrate_kbps=128,
    ),
}


def is_builtin(name: str) -> bool:
    return name in BUILTIN


def x264_params(p: Profile) -> str:
    """libx264 settings for deterministic keyframes and the profile's rate control."""
    gop = gop_frames(p)
    kbps = p.video_bitrate_kbps
    params = [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0", "open-gop=0", "bframes=0"]
    if p.rate_control == "cbr":
        params += [
            f"bitrate={kbps}",
            f"vbv-maxrate={kbps}",
            f"vbv-bufsize={kbps}",
            "nal-hrd=cbr",
            "force-cfr=1",
        ]
    else:
        params += [f"bitrate={kbps}", f"vbv-maxrate={kbps * 3 // 2}", f"vbv-bufsize={kbps * 2}"]
    return ":".join(params)
