"""What an ingest listener tells the bus: input health, publish sessions, and its counters."""

from __future__ import annotations

import contextlib
import time
from collections import Counter

from nats.aio.client import Client

from shared import subjects
from shared.messages import InputHealth, SessionEvent, WorkerStats, encode


class IngestReporter:
    def __init__(self, nc: Client, worker: str) -> None:
        self.nc = nc
        self.worker = worker
        self.counters: Counter[str] = Counter()

    async def emit_health(self, health: InputHealth) -> None:
        with contextlib.suppress(Exception):
            await self.nc.publish(
                subjects.input_health(health.tenant_id, health.event_id, health.input_id), encode(health)
            )

    async def emit_session(self, event: SessionEvent) -> None:
        subject = (
            subjects.ingest_session(event.tenant_id, event.event_id)
            if event.event_id
            else subjects.INGEST_REFUSED
        )
        with contextlib.suppress(Exception):
            await self.nc.publish(subject, encode(event))

    async def emit_stats(self, publishers: int) -> None:
        stats = WorkerStats(
            service="ingest",
            worker=self.worker,
            destinations=publishers,
            counters=dict(self.counters),
            ts=time.time(),
        )
        with contextlib.suppress(Exception):
            await self.nc.publish(subjects.worker_stats("ingest", self.worker), encode(stats))
