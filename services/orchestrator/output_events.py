"""Output lifecycle events the orchestrator acts on: an auto-disable becomes desired state.

An output worker that disables an output (too many failures for its class) says so on the bus, in the
output's state events, every second. The orchestrator records it on the output, so the output stays
off across worker restarts and lease moves until someone re-enables it through the API
(``POST /v1/outputs/{id}/start``), which clears it and bumps the output's generation; a late report
about an older generation is ignored.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from sqlalchemy.engine import Engine

from shared import messages, subjects

from . import store
from .desired import DesiredState, PublishFailed

log = logging.getLogger(__name__)

SEEN_MAX = 10_000


class AutoDisableRecorder:
    def __init__(self, engine: Engine, desired: DesiredState) -> None:
        self._engine = engine
        self._desired = desired
        self._seen: set[tuple[str, int]] = set()  # (output, generation) already recorded
        self._sub: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def subscribe(self, nc: Client) -> None:
        self._sub = await nc.subscribe(subjects.ALL_OUTPUT_STATE, cb=self._on_msg)

    async def _on_msg(self, msg: Msg) -> None:
        try:
            status = messages.decode(msg.data, messages.OutputStatus)
        except (msgspec.DecodeError, ValueError):
            return
        if status.state != "disabled" or not status.disabled_reason:
            return
        seen = (status.output_id, status.generation)
        if seen in self._seen:
            return
        if len(self._seen) >= SEEN_MAX:
            self._seen.clear()
        self._seen.add(seen)
        task = asyncio.ensure_future(self._record(status))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, status: messages.OutputStatus) -> None:
        try:
            event_id = await asyncio.to_thread(
                store.record_auto_disable,
                self._engine,
                status.output_id,
                status.generation,
                status.disabled_reason,
            )
        except Exception:
            log.exception("output.auto_disable_not_recorded", extra={"output_id": status.output_id})
            self._seen.discard((status.output_id, status.generation))  # the next report retries
            return
        if event_id is None:
            return
        log.info(
            "output.auto_disabled",
            extra={"event_id": event_id, "output_id": status.output_id, "reason": status.disabled_reason},
        )
        try:
            await self._desired.publish(event_id)
        except PublishFailed:
            pass  # saved; the desired-state publisher retries in the background

    async def close(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                log.debug("output_events.unsubscribe_failed", exc_info=True)
            self._sub = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
