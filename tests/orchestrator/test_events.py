"""Events, inputs and outputs through the API: shapes, lifecycle rules and live status from the bus."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared import messages, subjects
from tests.orchestrator.conftest import Api
from tests.peers.procs import async_wait_until

pytestmark = pytest.mark.timeout(60)

YT = "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-wxyz"


async def test_create_list_get_event(api: Api) -> None:
    reply = await api.call("POST", "/v1/events", {"name": "  Launch day "})
    assert reply.status == 201
    ev = reply.body
    assert ev["id"].startswith("ev_") and ev["name"] == "Launch day" and ev["state"] == "idle"
    assert ev["inputs"] == [] and ev["outputs"] == []
    assert {"created_at", "updated_at", "revision"} <= set(ev)
    listed = await api.ok("GET", "/v1/events")
    assert [e["id"] for e in listed["events"]] == [ev["id"]]
    assert set(listed["events"][0]) == {"id", "name", "state", "revision", "created_at", "updated_at"}
    assert await api.ok("GET", f"/v1/events/{ev['id']}") == ev
    assert (await api.call("GET", "/v1/events/ev_0000000000000000")).error == {
        "code": "not_found",
        "message": "event not found",
    }


async def test_input_and_output_shapes(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "e"})
    inp = await api.call("POST", f"/v1/events/{ev['id']}/inputs", {"role": "primary", "protocol": "rtmp"})
    assert inp.status == 201
    assert (
        inp.body["id"].startswith("in_") and inp.body["role"] == "primary" and inp.body["protocol"] == "rtmp"
    )
    assert inp.body["connected"] is False and len(inp.body["stream_key"]) >= 32
    out = await api.call(
        "POST", f"/v1/events/{ev['id']}/outputs", {"name": "YouTube", "url": YT, "class": "A"}
    )
    assert out.status == 201
    body = out.body
    assert body["id"].startswith("out_") and body["name"] == "YouTube" and body["class"] == "A"
    assert body["url"] == "rtmp://a.rtmp.youtube.com/live2/****wxyz" and body["enabled"] is True
    assert body["state"] == "idle" and body["bytes_sent"] == 0 and body["last_error"] == ""
    default_class = await api.ok("POST", f"/v1/events/{ev['id']}/outputs", {"name": "t", "url": YT})
    assert default_class["class"] == "B"
    detail = await api.ok("GET", f"/v1/events/{ev['id']}")
    assert [i["id"] for i in detail["inputs"]] == [inp.body["id"]]
    assert [o["id"] for o in detail["outputs"]] == [body["id"], default_class["id"]]
    assert await api.ok("GET", f"/v1/outputs/{body['id']}") == detail["outputs"][0]
    assert YT not in str(detail) and "abcd-efgh-ijkl-wxyz" not in str(detail)


async def test_event_lifecycle(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "e"})
    path = f"/v1/events/{ev['id']}"
    assert (await api.call("POST", path + "/stop")).status == 409  # never started
    started = await api.ok("POST", path + "/start")
    assert started["state"] == "live" and started["revision"] > ev["revision"]
    again = await api.call("POST", path + "/start")
    assert again.status == 409 and again.error["code"] == "conflict"
    deleting = await api.call("DELETE", path)
    assert deleting.status == 409 and "live" in deleting.error["message"]
    assert (await api.ok("POST", path + "/stop"))["state"] == "stopped"
    assert (await api.ok("POST", path + "/start"))["state"] == "live"  # a stopped event can go live again
    await api.ok("POST", path + "/stop")
    assert (await api.call("DELETE", path)).status == 204
    assert (await api.call("GET", path)).status == 404
    assert api.counts()["events"] == 0


async def test_deleting_an_event_deletes_its_inputs_and_outputs(api: Api) -> None:
    ids = await api.event_with_everything()
    assert (await api.call("DELETE", f"/v1/events/{ids['event_id']}")).status == 204
    assert (await api.call("GET", f"/v1/inputs/{ids['input_id']}")).status == 404
    assert (await api.call("GET", f"/v1/outputs/{ids['output_id']}")).status == 404
    counts = api.counts()
    assert counts["inputs"] == counts["outputs"] == counts["events"] == 0


async def test_output_enable_flag_survives_event_start(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "e"})
    a = await api.ok("POST", f"/v1/events/{ev['id']}/outputs", {"name": "a", "url": YT})
    b = await api.ok("POST", f"/v1/events/{ev['id']}/outputs", {"name": "b", "url": YT})
    assert (await api.ok("POST", f"/v1/outputs/{b['id']}/stop"))["enabled"] is False
    assert (await api.ok("POST", f"/v1/outputs/{b['id']}/stop"))["enabled"] is False  # idempotent
    detail = await api.ok("POST", f"/v1/events/{ev['id']}/start")
    assert {o["id"]: o["enabled"] for o in detail["outputs"]} == {a["id"]: True, b["id"]: False}
    assert (await api.ok("POST", f"/v1/outputs/{b['id']}/start"))["enabled"] is True


async def test_deleting_inputs_and_outputs(api: Api) -> None:
    ids = await api.event_with_everything()
    assert (await api.call("DELETE", f"/v1/inputs/{ids['input_id']}")).status == 204
    assert (await api.call("DELETE", f"/v1/inputs/{ids['input_id']}")).status == 404
    assert (await api.call("DELETE", f"/v1/outputs/{ids['output_id']}")).status == 204
    detail = await api.ok("GET", f"/v1/events/{ids['event_id']}")
    assert detail["inputs"] == [] and detail["outputs"] == []
    # the role is free again
    await api.ok("POST", f"/v1/events/{ids['event_id']}/inputs", {"role": "primary"})


async def test_event_detail_shows_live_input_health_and_output_status(api: Api) -> None:
    ids = await api.event_with_everything()
    tenant = "tn_default"
    health = messages.InputHealth(
        tenant_id=tenant,
        event_id=ids["event_id"],
        input_id=ids["input_id"],
        connected=True,
        bitrate_bps=4_500_000,
        fps=30.0,
        keyframe_interval_s=2.0,
        video_codec="h264",
        audio_codec="aac",
        width=1920,
        height=1080,
        ts=time.time(),
    )
    status = messages.OutputStatus(
        tenant_id=tenant,
        event_id=ids["event_id"],
        output_id=ids["output_id"],
        state="live",
        bytes_sent=123456,
        frames_sent=900,
        frames_dropped=3,
        connects=2,
        last_error="connection reset",
    )
    await api.nc.publish(
        subjects.input_health(tenant, ids["event_id"], ids["input_id"]), messages.encode(health)
    )
    await api.nc.publish(
        subjects.output_state(tenant, ids["event_id"], ids["output_id"]), messages.encode(status)
    )
    path = f"/v1/events/{ids['event_id']}"

    async def reported() -> bool:
        detail = await api.ok("GET", path)
        return bool(detail["inputs"][0]["connected"] and detail["outputs"][0]["state"] == "live")

    await async_wait_until(reported, 5, "status to show up")
    detail = await api.ok("GET", path)
    inp, out = detail["inputs"][0], detail["outputs"][0]
    assert {
        k: inp[k] for k in ("bitrate_bps", "fps", "keyframe_interval_s", "video_codec", "audio_codec")
    } == {
        "bitrate_bps": 4_500_000,
        "fps": 30.0,
        "keyframe_interval_s": 2.0,
        "video_codec": "h264",
        "audio_codec": "aac",
    }
    assert (inp["width"], inp["height"]) == (1920, 1080)
    assert {k: out[k] for k in ("bytes_sent", "frames_sent", "frames_dropped", "connects", "last_error")} == {
        "bytes_sent": 123456,
        "frames_sent": 900,
        "frames_dropped": 3,
        "connects": 2,
        "last_error": "connection reset",
    }
    assert (await api.ok("GET", f"/v1/inputs/{ids['input_id']}"))["connected"] is True
    assert (await api.ok("GET", f"/v1/outputs/{ids['output_id']}"))["bytes_sent"] == 123456

    # health stops coming: the input is shown disconnected once it is too old
    api.orchestrator.status.input_max_age_s = 0.2
    await asyncio.sleep(0.3)  # ok-sleep: let the last report age past the (shortened) limit
    detail = await api.ok("GET", path)
    assert detail["inputs"][0]["connected"] is False and detail["inputs"][0]["bitrate_bps"] == 0
    assert detail["outputs"][0]["state"] == "live"  # output status has no age limit: workers report changes


async def test_status_of_another_event_with_the_same_id_is_ignored(api: Api) -> None:
    ids = await api.event_with_everything()
    forged = messages.InputHealth(
        tenant_id="tn_x", event_id="ev_other", input_id=ids["input_id"], connected=True
    )
    await api.nc.publish(subjects.input_health("tn_x", "ev_other", ids["input_id"]), messages.encode(forged))
    await api.nc.flush()
    await asyncio.sleep(0.2)  # ok-sleep: give the orchestrator time to (wrongly) pick it up
    assert (await api.ok("GET", f"/v1/events/{ids['event_id']}"))["inputs"][0]["connected"] is False
