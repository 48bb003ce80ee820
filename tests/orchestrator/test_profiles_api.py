"""Encoding profiles through the API: listed, added per tenant and validated (422 naming the field), named
by outputs and carried in the event's desired state with their definitions."""

from __future__ import annotations

from typing import Any

import pytest

from shared.messages import RouterStatus
from tests.orchestrator.conftest import Api
from tests.orchestrator.test_desired import spec_of

pytestmark = pytest.mark.timeout(60)

URL = "rtmp://127.0.0.1/live/abcd-efgh"
MINE = {"name": "mine-360p", "width": 640, "height": 360, "fps": 30, "video_bitrate_kbps": 800}


async def new_event(api: Api) -> str:
    return str((await api.ok("POST", "/v1/events", {"name": "show"}))["id"])


async def test_builtins_are_listed(api: Api) -> None:
    listed = {p["name"]: p for p in (await api.ok("GET", "/v1/profiles"))["profiles"]}
    assert {"passthrough", "social-1080p30", "social-720p30", "rollback-720p30"} <= set(listed)
    assert all(p["builtin"] for p in listed.values())
    assert (
        listed["rollback-720p30"]["height"] == 720 and listed["rollback-720p30"]["audio_bitrate_kbps"] == 128
    )


async def test_a_tenant_adds_its_own_profile(api: Api) -> None:
    reply = await api.call("POST", "/v1/profiles", MINE)
    assert reply.status == 201, reply.body
    assert reply.body["keyframe_interval_s"] == 2.0 and reply.body["builtin"] is False
    listed = {p["name"] for p in (await api.ok("GET", "/v1/profiles"))["profiles"]}
    assert "mine-360p" in listed
    again = await api.call("POST", "/v1/profiles", MINE)
    assert again.status == 409
    clash = await api.call("POST", "/v1/profiles", {**MINE, "name": "social-720p30"})
    assert clash.status == 409


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"keyframe_interval_s": 9}, "keyframe_interval_s"),
    ({"video_bitrate_kbps": 200_000}, "video_bitrate_kbps"),
    ({"width": 641}, "width"),
    ({"fps": 240}, "fps"),
    ({"rate_control": "crf"}, "rate_control"),
    ({"bogus": 1}, "bogus"),
]


@pytest.mark.parametrize(("change", "field"), INVALID)
async def test_invalid_profiles_are_refused_naming_the_field(
    api: Api, change: dict[str, Any], field: str
) -> None:
    reply = await api.call("POST", "/v1/profiles", {**MINE, **change})
    assert reply.status == 422, reply.body
    assert reply.body["error"]["field"] == field, reply.body
    assert field in reply.body["error"]["message"]


async def test_outputs_name_a_profile_carried_in_desired_state(api: Api) -> None:
    ev = await new_event(api)
    await api.ok("POST", "/v1/profiles", MINE)
    plain = await api.ok("POST", f"/v1/events/{ev}/outputs", {"name": "a", "url": URL})
    assert plain["profile"] == "passthrough"
    coded = await api.ok(
        "POST", f"/v1/events/{ev}/outputs", {"name": "b", "url": URL, "profile": "mine-360p"}
    )
    assert coded["profile"] == "mine-360p"
    spec = await spec_of(api, ev)
    assert spec is not None
    assert [o.profile for o in spec.outputs] == ["passthrough", "mine-360p"]
    assert [p.name for p in spec.profiles] == ["mine-360p"] and spec.profiles[0].video_bitrate_kbps == 800
    changed = await api.ok("PATCH", f"/v1/outputs/{plain['id']}", {"profile": "social-720p30"})
    assert changed["profile"] == "social-720p30"
    spec = await spec_of(api, ev)
    assert spec is not None and [p.name for p in spec.profiles] == ["mine-360p", "social-720p30"]
    assert (await api.ok("GET", f"/v1/outputs/{plain['id']}"))["profile"] == "social-720p30"


async def test_unknown_profile_is_a_422(api: Api) -> None:
    ev = await new_event(api)
    reply = await api.call("POST", f"/v1/events/{ev}/outputs", {"name": "a", "url": URL, "profile": "nope"})
    assert reply.status == 422 and reply.body["error"]["field"] == "profile"
    out = await api.ok("POST", f"/v1/events/{ev}/outputs", {"name": "a", "url": URL})
    reply = await api.call("PATCH", f"/v1/outputs/{out['id']}", {"profile": "nope"})
    assert reply.status == 422 and reply.body["error"]["field"] == "profile"


async def test_rollback_mode_on_and_off(api: Api) -> None:
    ev = await new_event(api)
    inp = await api.ok("POST", f"/v1/events/{ev}/inputs", {"role": "primary", "protocol": "rtmp"})
    a = await api.ok("POST", f"/v1/events/{ev}/outputs", {"name": "a", "url": URL, "class": "A"})
    b = await api.ok(
        "POST",
        f"/v1/events/{ev}/outputs",
        {"name": "b", "url": URL, "class": "B", "profile": "social-720p30"},
    )
    c = await api.ok("POST", f"/v1/events/{ev}/outputs", {"name": "c", "url": URL, "class": "C"})
    api.orchestrator.status.update_router(RouterStatus(tenant_id="", event_id=ev, live_input=inp["id"]))
    view = await api.ok("POST", f"/v1/events/{ev}/rollback", {"min_priority": 2})
    assert view["rollback"] == {"min_priority": 2, "restores_lock": None}
    assert view["program"]["locked_input"] == inp["id"]
    outs = {o["id"]: o for o in view["outputs"]}
    assert {o["profile"] for o in outs.values()} == {"rollback-720p30"}
    assert [outs[o["id"]]["enabled"] for o in (a, b, c)] == [True, True, False]
    spec = await spec_of(api, ev)
    assert spec is not None and spec.locked_input == inp["id"]
    assert [p.name for p in spec.profiles] == ["rollback-720p30"]
    assert {(o.profile, o.enabled) for o in spec.outputs} == {
        ("rollback-720p30", True),
        ("rollback-720p30", False),
    }
    again = await api.ok("POST", f"/v1/events/{ev}/rollback", {"min_priority": 1})
    assert again["rollback"]["min_priority"] == 2, "already on: nothing changes"
    view = await api.ok("DELETE", f"/v1/events/{ev}/rollback")
    assert view["rollback"] is None and view["program"]["locked_input"] is None
    outs = {o["id"]: o for o in view["outputs"]}
    assert [(outs[o["id"]]["profile"], outs[o["id"]]["enabled"]) for o in (a, b, c)] == [
        ("passthrough", True),
        ("social-720p30", True),
        ("passthrough", True),
    ]
    spec = await spec_of(api, ev)
    assert (
        spec is not None and spec.locked_input == "" and [p.name for p in spec.profiles] == ["social-720p30"]
    )


async def test_rollback_keeps_a_lock_and_restores_it(api: Api) -> None:
    ev = await new_event(api)
    inp = await api.ok("POST", f"/v1/events/{ev}/inputs", {"role": "primary", "protocol": "rtmp"})
    await api.ok("POST", f"/v1/events/{ev}/outputs", {"name": "a", "url": URL, "class": "C"})
    await api.ok("POST", f"/v1/events/{ev}/lock", {"input_id": inp["id"]})
    view = await api.ok("POST", f"/v1/events/{ev}/rollback")  # no body: every class stays on
    assert view["rollback"] == {"min_priority": 3, "restores_lock": inp["id"]}
    assert view["outputs"][0]["enabled"] is True
    view = await api.ok("DELETE", f"/v1/events/{ev}/rollback")
    assert view["program"]["locked_input"] == inp["id"]
    bad = await api.call("POST", f"/v1/events/{ev}/rollback", {"min_priority": 7})
    assert bad.status == 422 and bad.body["error"]["field"] == "min_priority"
