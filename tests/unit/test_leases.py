"""Output leases: the pure decisions, and the KV shell against a real nats-server (create-if-absent,
reclaim by the same worker id, renew, lapse and takeover, release)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from shared import bus, leases, subjects
from shared.leases import LeaseKeeper, Plan, Renewal
from tests.peers.nats_server import NatsServer
from tests.peers.procs import async_wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("holder", "plan"),
    [(None, Plan.CREATE), ("", Plan.CREATE), ("out-1", Plan.RECLAIM), ("out-2", Plan.WAIT)],
)
def test_plan(holder: str | None, plan: Plan) -> None:
    assert leases.plan(holder, "out-1") is plan


@pytest.mark.parametrize(
    ("conflict", "holder", "outcome"),
    [
        (False, "out-1", Renewal.RENEWED),
        (True, None, Renewal.RETRY),  # lapsed: nobody holds it, take it again
        (True, "out-1", Renewal.RETRY),  # rewritten with our id (a restart of ours): take it again
        (True, "out-2", Renewal.LOST),
    ],
)
def test_after_renew(conflict: bool, holder: str | None, outcome: Renewal) -> None:
    assert leases.after_renew(conflict, holder, "out-1") is outcome


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    conn = await bus.connect(nats_server.url, "lease-test")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def kv(nc: Client) -> KeyValue:
    """A bucket of its own with a short TTL, so a lapse takes a second, not fifteen."""
    name = "leases_" + secrets.token_hex(4)
    return await nc.jetstream().create_key_value(
        KeyValueConfig(bucket=name, history=1, ttl=1.0, storage=StorageType.MEMORY)
    )


async def test_create_if_absent_and_another_worker_waits(kv: KeyValue) -> None:
    a, b = LeaseKeeper(kv, "out-a"), LeaseKeeper(kv, "out-b")
    assert await a.want("out_1")
    assert not await b.want("out_1")
    assert await leases.holder(kv, "out_1") == "out-a"
    assert a.holds("out_1") and not b.holds("out_1")


async def test_a_restarted_worker_with_the_same_id_reclaims_at_once(kv: KeyValue) -> None:
    first = LeaseKeeper(kv, "out-a")
    assert await first.want("out_1")
    restarted = LeaseKeeper(kv, "out-a")  # no memory of the lease, same worker id
    assert await restarted.want("out_1")
    assert await leases.holder(kv, "out_1") == "out-a"


async def test_renewing_keeps_the_lease_past_the_ttl(kv: KeyValue) -> None:
    a, b = LeaseKeeper(kv, "out-a"), LeaseKeeper(kv, "out-b")
    assert await a.want("out_1")
    for _ in range(6):  # 1.8 s, past the 1 s TTL, renewed every 0.3 s
        await a.tick()
        assert not await b.want("out_1")
        await asyncio.sleep(0.3)  # ok-sleep: renewals happen on a clock
    assert await leases.holder(kv, "out_1") == "out-a"


async def test_an_unrenewed_lease_lapses_and_another_worker_takes_over(kv: KeyValue) -> None:
    lost: list[str] = []
    acquired: list[str] = []

    async def on_lost(output_id: str) -> None:
        lost.append(output_id)

    async def on_acquired(output_id: str) -> None:
        acquired.append(output_id)

    a = LeaseKeeper(kv, "out-a", on_lost=on_lost)
    b = LeaseKeeper(kv, "out-b", on_acquired=on_acquired)
    assert await a.want("out_1")
    assert not await b.want("out_1")

    async def b_took_it() -> bool:
        await b.tick()
        return b.holds("out_1")

    await async_wait_until(b_took_it, 10, "the lapsed lease to be taken over", interval=0.2)
    assert acquired == ["out_1"]
    await a.tick()  # a wakes up (a stalled worker) and finds the lease gone to b
    assert lost == ["out_1"] and not a.holds("out_1")
    assert await leases.holder(kv, "out_1") == "out-b"


async def test_release_frees_the_lease_only_if_it_is_still_ours(kv: KeyValue) -> None:
    a, b = LeaseKeeper(kv, "out-a"), LeaseKeeper(kv, "out-b")
    assert await a.want("out_1")
    await a.unwant("out_1")
    assert await leases.holder(kv, "out_1") is None
    assert await b.want("out_1")
    a.held["out_1"] = 1  # a stale memory of an old revision
    await a.unwant("out_1")
    assert await leases.holder(kv, "out_1") == "out-b", "a stale release must not drop b's lease"


async def test_the_service_bucket_uses_the_shared_key_layout(nc: Client) -> None:
    kv = await bus.lease_bucket(nc)
    keeper = LeaseKeeper(kv, "out-x")
    output_id = "out_" + secrets.token_hex(4)
    assert await keeper.want(output_id)
    entry = await kv.get(subjects.lease_key(output_id))
    assert entry.value == b"out-x"
    await keeper.release_all()
    assert await leases.holder(kv, output_id) is None
