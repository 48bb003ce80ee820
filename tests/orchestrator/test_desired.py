"""Desired state in JetStream KV: the right EventSpec after every change, deletes, failures and rebuilds."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from nats.js.errors import KeyDeletedError, KeyNotFoundError

from services.orchestrator import desired, store
from shared import bus, messages, subjects
from tests.orchestrator.conftest import Api
from tests.peers.procs import async_wait_until

pytestmark = pytest.mark.timeout(60)

YT = "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop"


async def spec_of(api: Api, event_id: str) -> messages.EventSpec | None:
    kv = await bus.desired_bucket(api.nc)
    try:
        entry = await kv.get(subjects.desired_event_key(event_id))
    except (KeyNotFoundError, KeyDeletedError):
        return None
    assert entry.value is not None
    return messages.decode(entry.value, messages.EventSpec)


async def test_every_change_lands_in_kv_as_an_event_spec(api: Api) -> None:
    key = await api.new_tenant_key("acme")
    tenant_id = (await api.ok("GET", "/v1/tenants"))["tenants"][1]["id"]
    ev = await api.ok("POST", "/v1/events", {"name": "show"}, key)
    spec = await spec_of(api, ev["id"])
    assert spec == messages.EventSpec(tenant_id=tenant_id, id=ev["id"], name="show", state="idle", revision=1)

    inp = await api.ok("POST", f"/v1/events/{ev['id']}/inputs", {"role": "primary", "protocol": "rtmp"}, key)
    out = await api.ok("POST", f"/v1/events/{ev['id']}/outputs", {"name": "yt", "url": YT, "class": "C"}, key)
    spec = await spec_of(api, ev["id"])
    assert spec is not None
    assert spec.inputs == (
        messages.InputSpec(
            id=inp["id"],
            role="primary",
            protocol="rtmp",
            key_hash=hashlib.sha256(inp["stream_key"].encode()).hexdigest(),
        ),
    )
    # the key went to the vault: desired state has the URL without it and the credential's id
    assert out["credential_id"] and out["url"] == YT.rsplit("/", 1)[0] + "/****" + YT[-4:]
    assert spec.outputs == (
        messages.OutputSpec(
            id=out["id"],
            name="yt",
            url=YT.rsplit("/", 1)[0],
            dest_class="C",
            enabled=True,
            credential_id=out["credential_id"],
        ),
    )
    assert YT.rsplit("/", 1)[1].encode() not in messages.encode(spec)
    assert spec.revision == 3

    await api.ok("POST", f"/v1/outputs/{out['id']}/stop", key=key)
    await api.ok("POST", f"/v1/events/{ev['id']}/start", key=key)
    spec = await spec_of(api, ev["id"])
    assert spec is not None and spec.state == "live" and spec.outputs[0].enabled is False
    assert spec.revision == (await api.ok("GET", f"/v1/events/{ev['id']}", key=key))["revision"] == 5

    # an output added to a live event is in desired state by the time the POST returns
    late = await api.ok("POST", f"/v1/events/{ev['id']}/outputs", {"name": "late", "url": YT}, key)
    spec = await spec_of(api, ev["id"])
    assert spec is not None and [o.id for o in spec.outputs] == [out["id"], late["id"]]

    await api.ok("DELETE", f"/v1/inputs/{inp['id']}", key=key)
    await api.ok("DELETE", f"/v1/outputs/{out['id']}", key=key)
    spec = await spec_of(api, ev["id"])
    assert spec is not None and spec.inputs == () and [o.id for o in spec.outputs] == [late["id"]]

    await api.ok("POST", f"/v1/events/{ev['id']}/stop", key=key)
    assert (await spec_of(api, ev["id"])).state == "stopped"  # type: ignore[union-attr]
    await api.ok("DELETE", f"/v1/events/{ev['id']}", key=key)
    assert await spec_of(api, ev["id"]) is None


async def test_concurrent_changes_leave_the_latest_spec(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "busy"})
    replies = await asyncio.gather(
        *(api.call("POST", f"/v1/events/{ev['id']}/outputs", {"name": f"o{i}", "url": YT}) for i in range(12))
    )
    assert all(r.status == 201 for r in replies)
    detail = await api.ok("GET", f"/v1/events/{ev['id']}")
    spec = await spec_of(api, ev["id"])
    assert spec is not None and len(spec.outputs) == 12 and spec.revision == detail["revision"] == 13


async def test_a_kv_failure_is_a_json_5xx_and_is_retried(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(desired, "RETRY_INTERVAL_S", 0.1)
    publisher = api.orchestrator.desired
    real = publisher._publish_locked

    async def broken(event_id: str) -> None:
        raise ConnectionError("jetstream unavailable")

    monkeypatch.setattr(publisher, "_publish_locked", broken)
    reply = await api.call("POST", "/v1/events", {"name": "saved anyway"})
    assert reply.status == 503 and reply.error["code"] == "unavailable"
    (event,) = store.list_events(api.orchestrator.engine, "tn_default")
    assert event.name == "saved anyway", "the change is committed before it is published"
    assert event.id in publisher.pending
    assert await spec_of(api, event.id) is None

    monkeypatch.setattr(publisher, "_publish_locked", real)

    async def republished() -> bool:
        return await spec_of(api, event.id) is not None

    await async_wait_until(republished, 5, "the failed publish to be retried")
    # the spec lands in KV a moment before publish() returns and clears the pending mark
    await async_wait_until(lambda: not publisher.pending, 5, "the pending mark to clear")


async def test_republish_rebuilds_a_deleted_bucket_and_drops_stale_keys(api: Api) -> None:
    ids = await api.event_with_everything()
    await api.ok("POST", f"/v1/events/{ids['event_id']}/start")
    before = await spec_of(api, ids["event_id"])
    kv = await bus.desired_bucket(api.nc)
    await kv.put(subjects.desired_event_key("ev_stale0000000000"), b"{}")

    await api.orchestrator.desired.republish_all()
    assert await spec_of(api, "ev_stale0000000000") is None

    await api.nc.jetstream().delete_key_value(subjects.KV_DESIRED)
    await api.orchestrator.desired.republish_all()
    assert await spec_of(api, ids["event_id"]) == before
    # and publishing on a change works again with the recreated bucket
    await api.ok("POST", f"/v1/events/{ids['event_id']}/stop")
    assert (await spec_of(api, ids["event_id"])).state == "stopped"  # type: ignore[union-attr]
