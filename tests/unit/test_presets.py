"""Platform presets: URLs built from a key, typed URLs checked per platform, messages without the key."""

from __future__ import annotations

import pytest

from services.output import presets
from shared import urls

KEY = "abcd-efgh-ijkl-mnop-qrst"
TWITCH_KEY = "live_123456789_AbCdEfGhIjKlMnOpQrStUvWxYz"
FB_KEY = "FB-1234567890123456-0-AbCdEfGhIjKlMnOp?s_bl=1&s_psm=1&s_sw=0&a=AbCdEf"

BUILT = [
    ("youtube", KEY, False, f"rtmps://a.rtmps.youtube.com:443/live2/{KEY}", "live2"),
    ("youtube", KEY, True, f"rtmps://b.rtmps.youtube.com:443/live2?backup=1/{KEY}", "live2?backup=1"),
    ("twitch", TWITCH_KEY, False, f"rtmps://live.twitch.tv:443/app/{TWITCH_KEY}", "app"),
    ("facebook", FB_KEY, False, f"rtmps://live-api-s.facebook.com:443/rtmp/{FB_KEY}", "rtmp"),
]


@pytest.mark.parametrize(("name", "key", "backup", "url", "app"), BUILT)
def test_build_makes_a_url_the_output_can_publish_to(
    name: str, key: str, backup: bool, url: str, app: str
) -> None:
    built = presets.build(name, key, backup=backup)
    assert built == url
    target = urls.parse_destination_url(built)
    assert target.scheme == "rtmps" and target.port == 443
    assert target.app == app and target.stream_name == key
    assert target.tc_url.endswith(f":443/{app}")
    assert presets.check(built) is presets.PRESETS[name]  # recognised by its host


VALID_URLS = [
    (None, f"rtmp://a.rtmp.youtube.com/live2/{KEY}", "youtube"),
    (None, f"rtmp://b.rtmp.youtube.com/live2?backup=1/{KEY}", "youtube"),
    ("youtube", f"rtmps://a.rtmps.youtube.com/live2/{KEY}", "youtube"),
    (None, f"rtmp://live.twitch.tv/app/{TWITCH_KEY}", "twitch"),
    ("twitch", f"rtmp://fra05.contribute.live-video.net/app/{TWITCH_KEY}?bandwidthtest=true", "twitch"),
    (None, f"rtmps://live-api-s.facebook.com:443/rtmp/{FB_KEY}", "facebook"),
    (None, "rtmp://127.0.0.1:1935/live/stream", None),  # any other destination: no platform rules
    (None, "rtmps://ingest.example.com/app/key", None),
]


@pytest.mark.parametrize(("name", "url", "platform"), VALID_URLS)
def test_valid_urls(name: str | None, url: str, platform: str | None) -> None:
    found = presets.check(url, name)
    assert (found.name if found else None) == platform


INVALID_URLS = [
    (None, f"rtmp://live-api-s.facebook.com:80/rtmp/{FB_KEY}", "Facebook Live needs RTMPS"),
    ("facebook", f"rtmp://live-api-s.facebook.com/rtmp/{FB_KEY}", "needs RTMPS"),
    ("youtube", f"rtmp://live.twitch.tv/app/{TWITCH_KEY}", "is not a YouTube Live ingest"),
    ("facebook", "rtmps://evil.example.com/rtmp/x", "is not a Facebook Live ingest"),
    (None, f"rtmp://a.rtmp.youtube.com/live/{KEY}", "application must be 'live2'"),
    (None, f"rtmp://live.twitch.tv/live/{TWITCH_KEY}", "must be 'app'"),
    ("twitch", "http://live.twitch.tv/app/key", "scheme must be rtmp:// or rtmps://"),
    ("myspace", "rtmp://a.example.com/app/key", "unknown preset 'myspace'"),
]


@pytest.mark.parametrize(("name", "url", "message"), INVALID_URLS)
def test_invalid_urls_say_why_without_the_key(name: str | None, url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        presets.check(url, name)
    for secret in (KEY, TWITCH_KEY, FB_KEY):
        assert secret not in str(info.value)


@pytest.mark.parametrize(
    ("name", "key", "backup", "message"),
    [
        ("twitch", TWITCH_KEY, True, "Twitch has no backup ingest"),
        ("facebook", FB_KEY, True, "no backup ingest"),
        ("youtube", "", False, "stream key is empty"),
        ("youtube", "has space-" + KEY, False, "without spaces"),
        ("youtube", f"rtmp://a.rtmp.youtube.com/live2/{KEY}", False, "not the whole URL"),
        ("youtube", "k" * 2000, False, "too long"),
        ("youtube", "clé-" + KEY, False, "ASCII"),
        ("vimeo", KEY, False, "unknown preset"),
    ],
)
def test_build_refuses_bad_keys_and_missing_backups(name: str, key: str, backup: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        presets.build(name, key, backup=backup)
    if len(key) >= 12 and "://" not in key:
        assert key not in str(info.value)


def test_backup_url_keeps_the_primary_key() -> None:
    primary = presets.build("youtube", KEY)
    assert presets.backup_url("youtube", primary) == presets.build("youtube", KEY, backup=True)


def test_sanitised_backup_url_masks_the_key() -> None:
    shown = urls.sanitize(presets.build("youtube", KEY, backup=True))
    assert KEY not in shown and shown.endswith("qrst")
