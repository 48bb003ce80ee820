"""An output worker's auto-disable becomes desired state: the output stays off until re-enabled through
the API, and a late report about the previous run cannot disable it again."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.orchestrator import store
from shared import messages, subjects
from tests.orchestrator.conftest import Api
from tests.orchestrator.test_desired import spec_of
from tests.peers.procs import async_wait_until

pytestmark = pytest.mark.timeout(60)

REASON = "10 failures within 5 min (class B limit 10); last: ConnectionRefusedError"


async def report(
    api: Api, ids: dict[str, str], state: str, generation: int, reason: str = "", failures: int = 10
) -> None:
    status = messages.OutputStatus(
        tenant_id="tn_default",
        event_id=ids["event_id"],
        output_id=ids["output_id"],
        state=state,
        failures=failures,
        disabled_reason=reason,
        last_error="ConnectionRefusedError",
        generation=generation,
        state_since=time.time(),
        warnings=["keyframe interval 4.0 s exceeds the class B limit of 2 s"],
    )
    subject = subjects.output_state("tn_default", ids["event_id"], ids["output_id"])
    await api.nc.publish(subject, messages.encode(status))
    await api.nc.flush()


async def test_auto_disable_is_recorded_and_cleared_by_re_enabling(api: Api) -> None:
    ids = await api.event_with_everything()
    await api.ok("POST", f"/v1/events/{ids['event_id']}/start")
    out_path = f"/v1/outputs/{ids['output_id']}"

    await report(api, ids, "disabled", 0, REASON)

    async def recorded() -> bool:
        spec = await spec_of(api, ids["event_id"])
        return spec is not None and spec.outputs[0].auto_disabled == REASON

    await async_wait_until(recorded, 10, "the auto-disable to reach desired state")
    view = await api.ok("GET", out_path)
    assert view["state"] == "disabled" and view["disabled_reason"] == REASON and view["enabled"] is True
    assert view["warnings"] == ["keyframe interval 4.0 s exceeds the class B limit of 2 s"]
    assert view["failures"] == 10 and view["state_since"] is not None

    # the worker keeps reporting each second: recorded once, the revision does not churn
    revision = (await api.ok("GET", f"/v1/events/{ids['event_id']}"))["revision"]
    for _ in range(3):
        await report(api, ids, "disabled", 0, REASON)
    await report(api, ids, "disabled", 0, REASON, failures=11)

    async def last_seen() -> bool:
        return (await api.ok("GET", out_path))["failures"] == 11

    await async_wait_until(last_seen, 10, "the last report")
    assert (await api.ok("GET", f"/v1/events/{ids['event_id']}"))["revision"] == revision

    # re-enabled through the API: a new generation, the record is gone
    view = await api.ok("POST", f"{out_path}/start")
    spec = await spec_of(api, ids["event_id"])
    assert spec is not None
    assert spec.outputs[0].auto_disabled == "" and spec.outputs[0].generation == 1
    assert view["state"] == "idle" and view["disabled_reason"] == ""  # the old run's report no longer counts

    # a late report from the previous run cannot disable it again
    await report(api, ids, "disabled", 0, REASON)
    await report(api, ids, "connecting", 1)

    async def new_run_shown() -> bool:
        return (await api.ok("GET", out_path))["state"] == "connecting"

    await async_wait_until(new_run_shown, 10, "the new run's state")
    spec = await spec_of(api, ids["event_id"])
    assert spec is not None and spec.outputs[0].auto_disabled == ""
    engine = api.orchestrator.engine
    assert await asyncio.to_thread(store.record_auto_disable, engine, ids["output_id"], 0, REASON) is None
    assert (
        await asyncio.to_thread(store.record_auto_disable, engine, ids["output_id"], 1, REASON)
        == ids["event_id"]
    )


async def test_a_disable_report_for_an_output_stopped_meanwhile_is_ignored(api: Api) -> None:
    ids = await api.event_with_everything()
    await api.ok("POST", f"/v1/outputs/{ids['output_id']}/stop")
    revision = (await api.ok("GET", f"/v1/events/{ids['event_id']}"))["revision"]
    await report(api, ids, "disabled", 0, REASON)
    await report(api, ids, "stopped", 0)

    async def stopped_shown() -> bool:
        return (await api.ok("GET", f"/v1/outputs/{ids['output_id']}"))["state"] == "stopped"

    await async_wait_until(stopped_shown, 10, "the stopped report")
    assert (await api.ok("GET", f"/v1/events/{ids['event_id']}"))["revision"] == revision
    spec = await spec_of(api, ids["event_id"])
    assert spec is not None and spec.outputs[0].auto_disabled == "" and not spec.outputs[0].enabled
