"""The failover API: policy in the create body and PATCH (validated), lock/unlock in desired state,
manual switch as a command to the router, and the router's status in GET /v1/events/{id}."""

from __future__ import annotations

import time
from typing import Any

import pytest
from nats.aio.msg import Msg

from shared import messages, subjects
from tests.orchestrator.conftest import Api
from tests.orchestrator.test_desired import spec_of
from tests.peers.procs import async_wait_until

pytestmark = pytest.mark.timeout(60)

DEFAULTS = {
    "loss_timeout_ms": 2000,
    "stable_window_s": 30.0,
    "preference": "primary",
    "black_s": None,
    "frozen_s": None,
    "silence_s": None,
}


async def event_with_inputs(api: Api, body: dict[str, Any] | None = None) -> tuple[str, str, str]:
    ev = await api.ok("POST", "/v1/events", body or {"name": "show"})
    primary = await api.ok("POST", f"/v1/events/{ev['id']}/inputs", {"role": "primary"})
    backup = await api.ok("POST", f"/v1/events/{ev['id']}/inputs", {"role": "backup"})
    return ev["id"], primary["id"], backup["id"]


async def test_defaults_then_policy_from_the_create_body_in_the_view_and_desired_state(api: Api) -> None:
    plain = await api.ok("POST", "/v1/events", {"name": "plain"})
    assert plain["failover"] == DEFAULTS
    assert plain["program"] == {
        "mode": "auto",
        "locked_input": None,
        "live_input": None,
        "pending_input": None,
        "recent_switches": [],
    }
    body = {"name": "x", "failover": {"loss_timeout_ms": 1000, "stable_window_s": 3, "black_s": 2}}
    ev = await api.ok("POST", "/v1/events", body)
    assert ev["failover"] == {**DEFAULTS, "loss_timeout_ms": 1000, "stable_window_s": 3.0, "black_s": 2.0}
    spec = await spec_of(api, ev["id"])
    assert spec is not None
    assert spec.failover == messages.FailoverPolicy(loss_timeout_ms=1000, stable_window_s=3.0, black_s=2.0)
    assert spec.locked_input == ""


@pytest.mark.parametrize(
    ("failover", "field"),
    [
        ({"loss_timeout_ms": 499}, "failover.loss_timeout_ms"),
        ({"loss_timeout_ms": 10_001}, "failover.loss_timeout_ms"),
        ({"loss_timeout_ms": 1.5}, "failover.loss_timeout_ms"),
        ({"stable_window_s": 2.9}, "failover.stable_window_s"),
        ({"stable_window_s": 601}, "failover.stable_window_s"),
        ({"preference": "backup"}, "failover.preference"),
        ({"black_s": 0.1}, "failover.black_s"),
        ({"frozen_s": 601}, "failover.frozen_s"),
        ({"silence_s": "long"}, "failover.silence_s"),
        ({"lock": True}, "failover.lock"),
    ],
)
@pytest.mark.parametrize("how", ["create", "patch"])
async def test_out_of_range_policy_is_422_naming_the_field(
    api: Api, how: str, failover: dict[str, Any], field: str
) -> None:
    if how == "create":
        reply = await api.call("POST", "/v1/events", {"name": "x", "failover": failover})
    else:
        ev = await api.ok("POST", "/v1/events", {"name": "x"})
        reply = await api.call("PATCH", f"/v1/events/{ev['id']}", {"failover": failover})
    assert reply.status == 422, reply.body
    assert reply.error["field"] == field
    assert field.rsplit(".", 1)[1] in reply.error["message"]


@pytest.mark.parametrize(
    ("value", "ok"),
    [({"loss_timeout_ms": 500}, True), ({"loss_timeout_ms": 10_000}, True), ({"stable_window_s": 3}, True),
     ({"stable_window_s": 600}, True), ({"preference": "equal"}, True)],
)  # fmt: skip
async def test_range_edges_are_accepted(api: Api, value: dict[str, Any], ok: bool) -> None:
    reply = await api.call("POST", "/v1/events", {"name": "x", "failover": value})
    assert (reply.status == 201) is ok, reply.body


async def test_patch_changes_only_what_it_names_and_republishes(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "x", "failover": {"black_s": 2, "silence_s": 5}})
    patched = await api.ok(
        "PATCH", f"/v1/events/{ev['id']}", {"failover": {"loss_timeout_ms": 700, "black_s": None}}
    )
    assert patched["failover"] == {**DEFAULTS, "loss_timeout_ms": 700, "silence_s": 5.0}
    assert patched["name"] == "x" and patched["revision"] == ev["revision"] + 1
    spec = await spec_of(api, ev["id"])
    assert spec is not None and spec.revision == patched["revision"]
    assert spec.failover == messages.FailoverPolicy(loss_timeout_ms=700, silence_s=5.0)
    renamed = await api.ok("PATCH", f"/v1/events/{ev['id']}", {"name": "  y "})
    assert renamed["name"] == "y" and renamed["failover"] == patched["failover"]
    same = await api.ok("PATCH", f"/v1/events/{ev['id']}", {})
    assert same["revision"] == renamed["revision"], "a PATCH that changes nothing is not a new revision"


async def test_lock_and_unlock_go_to_desired_state(api: Api) -> None:
    event_id, primary, backup = await event_with_inputs(api)
    locked = await api.ok("POST", f"/v1/events/{event_id}/lock", {"input_id": backup})
    assert locked["program"]["mode"] == "locked" and locked["program"]["locked_input"] == backup
    spec = await spec_of(api, event_id)
    assert spec is not None and spec.locked_input == backup
    other_event, other_primary, _ = await event_with_inputs(api)
    reply = await api.call("POST", f"/v1/events/{event_id}/lock", {"input_id": other_primary})
    assert reply.status == 404 and reply.error["message"] == "input not found"
    unlocked = await api.ok("POST", f"/v1/events/{event_id}/unlock")
    assert unlocked["program"]["mode"] == "auto" and unlocked["program"]["locked_input"] is None
    spec = await spec_of(api, event_id)
    assert spec is not None and spec.locked_input == ""
    # deleting the locked input unlocks the event
    await api.ok("POST", f"/v1/events/{event_id}/lock", {"input_id": primary})
    assert (await api.call("DELETE", f"/v1/inputs/{primary}")).status == 204
    after = await api.ok("GET", f"/v1/events/{event_id}")
    assert after["program"]["mode"] == "auto"
    assert (await api.call("POST", f"/v1/events/{event_id}/lock", {})).error["field"] == "input_id"
    assert other_event != event_id


async def test_manual_switch_is_a_command_to_the_router(api: Api) -> None:
    event_id, primary, backup = await event_with_inputs(api)
    path = f"/v1/events/{event_id}/switch"
    idle = await api.call("POST", path, {"input_id": backup})
    assert idle.status == 409 and "not live" in idle.error["message"]
    await api.ok("POST", f"/v1/events/{event_id}/start")
    nobody = await api.call("POST", path, {"input_id": backup})
    assert nobody.status == 503, "no router answering is 503, not a hang"
    assert (await api.call("POST", path, {"input_id": "in_0123456789abcdef"})).status == 404

    tenant = (await spec_of(api, event_id)).tenant_id  # type: ignore[union-attr]
    received: list[messages.RouterCommand] = []

    async def router(msg: Msg) -> None:
        command = messages.decode(msg.data, messages.RouterCommand)
        received.append(command)
        if command.input_id == primary:
            reply = messages.RouterReply(ok=False, code="locked", message="the event is locked to x")
        else:
            reply = messages.RouterReply(ok=True, message="switching at the next keyframe")
        await msg.respond(messages.encode(reply))

    sub = await api.nc.subscribe(subjects.router_command(tenant, event_id), cb=router)
    try:
        accepted = await api.call("POST", path, {"input_id": backup})
        assert accepted.status == 202, accepted.body
        assert accepted.body == {
            "event_id": event_id,
            "input_id": backup,
            "message": "switching at the next keyframe",
        }
        refused = await api.call("POST", path, {"input_id": primary})
        assert refused.status == 409 and refused.error["message"] == "the event is locked to x"
    finally:
        await sub.unsubscribe()
    assert received == [messages.RouterCommand("switch", backup), messages.RouterCommand("switch", primary)]


async def test_the_routers_status_shows_in_the_event(api: Api) -> None:
    event_id, primary, backup = await event_with_inputs(api)
    spec = await spec_of(api, event_id)
    assert spec is not None
    now = time.time()
    switch = messages.FailoverEvent(
        tenant_id=spec.tenant_id,
        event_id=event_id,
        from_input=primary,
        to_input=backup,
        reason="disconnect",
        trigger_ts=now - 1,
        activated_ts=now - 0.98,
        activation_ms=20.0,
        seq=1,
    )
    status = messages.RouterStatus(
        tenant_id=spec.tenant_id, event_id=event_id, live_input=backup, recent_switches=[switch], ts=now
    )
    await api.nc.publish(subjects.router_status(spec.tenant_id, event_id), messages.encode(status))

    async def shown() -> bool:
        return (await api.ok("GET", f"/v1/events/{event_id}"))["program"]["live_input"] == backup

    await async_wait_until(shown, 10, "the router status to show")
    program = (await api.ok("GET", f"/v1/events/{event_id}"))["program"]
    (seen,) = program["recent_switches"]
    assert seen["from"] == primary and seen["to"] == backup and seen["reason"] == "disconnect"
    assert seen["activation_ms"] == 20.0 and seen["planned"] is False
    assert seen["triggered_at"].endswith("Z") or "+00:00" in seen["triggered_at"]
