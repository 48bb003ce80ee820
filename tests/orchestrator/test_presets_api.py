"""Platform presets through the API: pick a preset and paste the key, or type a URL that is checked per
platform; a paired backup-ingest output; clear 422s that never echo the key."""

from __future__ import annotations

from typing import Any

import pytest

from tests.orchestrator.conftest import Api
from tests.orchestrator.test_desired import spec_of

pytestmark = pytest.mark.timeout(60)

YT_KEY = "abcd-efgh-ijkl-mnop-qrst"
TW_KEY = "live_123456789_AbCdEfGhIjKlMnOpQrStUvWx"
FB_KEY = "FB-1234567890123456-0-AbCdEfGhIjKlMnOp"
KEYS = (YT_KEY, TW_KEY, FB_KEY)


async def new_event(api: Api) -> str:
    return str((await api.ok("POST", "/v1/events", {"name": "show"}))["id"])


async def test_presets_are_listed(api: Api) -> None:
    listed = (await api.ok("GET", "/v1/presets"))["presets"]
    by_name = {p["name"]: p for p in listed}
    assert set(by_name) == {"youtube", "twitch", "facebook"}
    assert by_name["facebook"]["schemes"] == ["rtmps"]
    assert by_name["youtube"]["backup_server"] == "rtmps://b.rtmps.youtube.com:443/live2?backup=1"
    assert by_name["twitch"]["backup_server"] is None
    assert all(p["class"] == "B" for p in listed)


BUILT = [
    ("youtube", YT_KEY, "rtmps://a.rtmps.youtube.com:443/live2/", "rtmps://a.rtmps.youtube.com:443/live2/****qrst"),
    ("twitch", TW_KEY, "rtmps://live.twitch.tv:443/app/", "rtmps://live.twitch.tv:443/app/****UvWx"),
    ("facebook", FB_KEY, "rtmps://live-api-s.facebook.com:443/rtmp/", "rtmps://live-api-s.facebook.com:443/rtmp/****MnOp"),
]  # fmt: skip


@pytest.mark.parametrize(("preset", "key", "server", "shown"), BUILT)
async def test_preset_and_key_build_the_url(api: Api, preset: str, key: str, server: str, shown: str) -> None:
    ev = await new_event(api)
    reply = await api.call(
        "POST", f"/v1/events/{ev}/outputs", {"name": preset, "preset": preset, "stream_key": key}
    )
    assert reply.status == 201, reply.body
    out = reply.body
    assert out["url"] == shown and out["preset"] == preset and out["class"] == "B"
    assert out["paired_output_id"] is None
    assert key not in str(out)
    spec = await spec_of(api, ev)
    # what the output worker gets: the URL without the key, and the vault credential that holds it
    assert spec is not None and spec.outputs[0].url == server.rstrip("/")
    assert spec.outputs[0].credential_id == out["credential_id"]


VALID_URLS = [
    ({"url": f"rtmp://a.rtmp.youtube.com/live2/{YT_KEY}"}, "youtube"),
    ({"url": f"rtmps://a.rtmps.youtube.com/live2/{YT_KEY}", "preset": "youtube"}, "youtube"),
    ({"url": f"rtmp://fra05.contribute.live-video.net/app/{TW_KEY}", "preset": "twitch"}, "twitch"),
    ({"url": f"rtmps://live-api-s.facebook.com:443/rtmp/{FB_KEY}"}, "facebook"),
    ({"url": "rtmp://ingest.example.com/live/some-key"}, None),
]


@pytest.mark.parametrize(("body", "preset"), VALID_URLS)
async def test_typed_urls_are_checked_and_recognised(
    api: Api, body: dict[str, Any], preset: str | None
) -> None:
    ev = await new_event(api)
    reply = await api.call("POST", f"/v1/events/{ev}/outputs", {"name": "x", **body})
    assert reply.status == 201, reply.body
    assert reply.body["preset"] == preset


INVALID = [
    ({"url": f"rtmp://live-api-s.facebook.com:80/rtmp/{FB_KEY}"}, "url", "Facebook Live needs RTMPS"),
    ({"url": f"rtmp://live-api-s.facebook.com/rtmp/{FB_KEY}", "preset": "facebook"}, "url", "needs RTMPS"),
    ({"url": f"rtmp://live.twitch.tv/app/{TW_KEY}", "preset": "youtube"}, "url", "not a YouTube Live ingest"),
    ({"url": f"rtmp://a.rtmp.youtube.com/live/{YT_KEY}"}, "url", "application must be 'live2'"),
    ({"preset": "youtube"}, "stream_key", "required with the youtube preset"),
    ({"stream_key": YT_KEY}, "preset", "needs a preset"),
    ({"url": f"rtmp://a.rtmp.youtube.com/live2/{YT_KEY}", "stream_key": YT_KEY}, "stream_key", "not both"),
    ({"preset": "youtube", "stream_key": f"{YT_KEY} extra"}, "stream_key", "without spaces"),
    ({"preset": "youtube", "stream_key": f"rtmp://a.rtmp.youtube.com/live2/{YT_KEY}"}, "stream_key", "not the whole URL"),
    ({"preset": "twitch", "stream_key": TW_KEY, "backup": True}, "backup", "Twitch has no backup ingest"),
    ({"url": "rtmp://ingest.example.com/live/k", "backup": True}, "backup", "this destination has no backup"),
    ({"preset": "vimeo", "stream_key": YT_KEY}, "preset", "Invalid enum value 'vimeo'"),
    ({"preset": "youtube", "stream_key": ""}, "stream_key", "length"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "field", "message"), INVALID)
async def test_invalid_presets_and_urls_are_a_clear_422(
    api: Api, body: dict[str, Any], field: str, message: str
) -> None:
    ev = await new_event(api)
    reply = await api.call("POST", f"/v1/events/{ev}/outputs", {"name": "x", **body})
    assert reply.status == 422, reply.body
    assert reply.error["field"] == field
    assert message in reply.error["message"]
    for key in KEYS:
        assert key not in str(reply.body)
    assert (await api.ok("GET", f"/v1/events/{ev}"))["outputs"] == []


async def test_youtube_backup_ingest_is_a_paired_output(api: Api) -> None:
    ev = await new_event(api)
    body = {"name": "YouTube", "preset": "youtube", "stream_key": YT_KEY, "backup": True, "class": "A"}
    primary = await api.ok("POST", f"/v1/events/{ev}/outputs", body)
    detail = await api.ok("GET", f"/v1/events/{ev}")
    assert len(detail["outputs"]) == 2
    backup = next(o for o in detail["outputs"] if o["id"] != primary["id"])
    assert primary["paired_output_id"] == backup["id"] and backup["paired_output_id"] == primary["id"]
    assert backup["name"] == "YouTube (backup)" and backup["class"] == "A" and backup["preset"] == "youtube"
    assert backup["url"].startswith("rtmps://b.rtmps.youtube.com:443/") and YT_KEY not in str(detail)
    spec = await spec_of(api, ev)
    assert spec is not None
    urls = {o.id: o.url for o in spec.outputs}
    assert urls[primary["id"]] == "rtmps://a.rtmps.youtube.com:443/live2"
    assert urls[backup["id"]] == "rtmps://b.rtmps.youtube.com:443/live2?backup=1"
    assert {o.credential_id for o in spec.outputs} == {primary["credential_id"]}, "one key, in the vault"
    # each runs and fails on its own; deleting the output deletes its pair
    await api.ok("POST", f"/v1/outputs/{backup['id']}/stop")
    assert (await api.ok("GET", f"/v1/outputs/{primary['id']}"))["enabled"] is True
    reply = await api.call("DELETE", f"/v1/outputs/{primary['id']}")
    assert reply.status == 204
    assert (await api.ok("GET", f"/v1/events/{ev}"))["outputs"] == []


async def test_a_backup_from_a_typed_youtube_url(api: Api) -> None:
    ev = await new_event(api)
    body = {"name": "yt", "url": f"rtmp://a.rtmp.youtube.com/live2/{YT_KEY}", "backup": True}
    primary = await api.ok("POST", f"/v1/events/{ev}/outputs", body)
    spec = await spec_of(api, ev)
    assert spec is not None
    assert {o.url for o in spec.outputs} == {
        "rtmp://a.rtmp.youtube.com/live2",
        "rtmps://b.rtmps.youtube.com:443/live2?backup=1",
    }
    assert {o.credential_id for o in spec.outputs} == {primary["credential_id"]}
    assert primary["paired_output_id"] in {o.id for o in spec.outputs}
