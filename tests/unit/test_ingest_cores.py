"""Ingest's pure parts: the stream-key directory and input health statistics."""

from __future__ import annotations

import pytest

from services.ingest.keys import KeyDirectory, key_hash, stream_key_from_name
from services.ingest.stats import InputStats
from shared.messages import EventSpec, InputSpec, MediaPacket


def spec(state: str = "idle", key: str = "secret-key", event: str = "ev_1") -> EventSpec:
    return EventSpec(
        tenant_id="tn_1",
        id=event,
        name="e",
        state=state,  # type: ignore[arg-type]
        inputs=(InputSpec(id="in_1", role="primary", protocol="rtmp", key_hash=key_hash(key)),),
    )


@pytest.mark.parametrize(
    ("name", "key"),
    [("abc", "abc"), ("abc?token=1", "abc"), (" abc ", "abc"), ("", ""), ("?x", "")],
)
def test_stream_key_from_name(name: str, key: str) -> None:
    assert stream_key_from_name(name) == key


def test_directory_routes_known_keys_and_refuses_unknown_stopped_or_wrong_protocol() -> None:
    keys = KeyDirectory()
    keys.update("ev_1", spec())
    route = keys.lookup("secret-key", "rtmp")
    assert route is not None and (route.tenant_id, route.event_id, route.input_id) == ("tn_1", "ev_1", "in_1")
    assert keys.lookup("other", "rtmp") is None
    assert keys.lookup("", "rtmp") is None
    assert keys.lookup("secret-key", "srt") is None
    assert keys.is_current(route)
    keys.update("ev_1", spec(state="stopped"))
    assert keys.lookup("secret-key", "rtmp") is None
    assert not keys.is_current(route)
    keys.update("ev_1", spec(state="live"))
    assert keys.lookup("secret-key", "rtmp") == route
    keys.update("ev_1", None)
    assert keys.lookup("secret-key", "rtmp") is None


def test_stats_bitrate_fps_and_keyframe_interval() -> None:
    stats = InputStats()
    for i in range(60):  # 2 s of 30 fps, 10 kB frames, keyframe every second
        now = i / 30
        stats.on_packet(MediaPacket("video", "h264", i * 3000, i * 3000, i % 30 == 0, b"x" * 10_000), now)
        stats.on_packet(MediaPacket("audio", "aac", i * 3000, i * 3000, True, b"a" * 100), now)
    now = 59 / 30
    assert stats.fps(now) == pytest.approx(30, abs=1)
    assert stats.bitrate_bps(now) == pytest.approx(60 * 10_100 * 8 / 2, rel=0.05)
    assert stats.keyframe_interval_s == pytest.approx(1.0)
    assert (stats.video_codec, stats.audio_codec) == ("h264", "aac")
    assert stats.bitrate_bps(now + 10) == 0 and stats.fps(now + 10) == 0
