"""The latest input health and output status per id, as reported by ingest and output workers.

Memory only: it is rebuilt within seconds from the workers' periodic reports. Input health older
than ``input_max_age_s`` counts as disconnected (ingest stopped reporting, or died). The number of
ids kept is bounded; the least recently reported go first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from shared import messages, subjects

log = logging.getLogger(__name__)

T = TypeVar("T")

INPUT_MAX_AGE_S = 5.0
MAX_ENTRIES = 100_000


class StatusCache:
    def __init__(
        self,
        input_max_age_s: float = INPUT_MAX_AGE_S,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.input_max_age_s = input_max_age_s
        self.max_entries = max_entries
        self._clock = clock
        self._inputs: dict[str, tuple[float, messages.InputHealth]] = {}
        self._outputs: dict[str, tuple[float, messages.OutputStatus]] = {}
        self._routers: dict[str, tuple[float, messages.RouterStatus]] = {}
        self._subs: list[Subscription] = []

    def update_input(self, health: messages.InputHealth) -> None:
        self._remember(self._inputs, health.input_id, health)

    def update_output(self, status: messages.OutputStatus) -> None:
        self._remember(self._outputs, status.output_id, status)

    def update_router(self, status: messages.RouterStatus) -> None:
        self._remember(self._routers, status.event_id, status)

    def router(self, event_id: str) -> messages.RouterStatus | None:
        """The router's latest report on an event, or None when there is none recent."""
        entry = self._routers.get(event_id)
        if entry is None or self._clock() - entry[0] > self.input_max_age_s:
            return None
        return entry[1]

    def _remember(self, table: dict[str, tuple[float, T]], key: str, value: T) -> None:
        table.pop(key, None)  # re-insert so dict order is least recently reported first
        table[key] = (self._clock(), value)
        while len(table) > self.max_entries:
            del table[next(iter(table))]

    def input(self, event_id: str, input_id: str) -> messages.InputHealth | None:
        """The latest health of an input, or None when there is none or it is too old."""
        entry = self._inputs.get(input_id)
        if entry is None:
            return None
        seen, health = entry
        if health.event_id != event_id or self._clock() - seen > self.input_max_age_s:
            return None
        return health

    def output(self, event_id: str, output_id: str) -> messages.OutputStatus | None:
        entry = self._outputs.get(output_id)
        if entry is None or entry[1].event_id != event_id:
            return None
        return entry[1]

    def forget(self, input_or_output_id: str) -> None:
        self._inputs.pop(input_or_output_id, None)
        self._outputs.pop(input_or_output_id, None)
        self._routers.pop(input_or_output_id, None)

    async def subscribe(self, nc: Client) -> None:
        async def on_input(msg: Msg) -> None:
            self._on(msg, messages.InputHealth, self.update_input)

        async def on_output(msg: Msg) -> None:
            self._on(msg, messages.OutputStatus, self.update_output)

        self._subs.append(await nc.subscribe(subjects.ALL_INPUT_HEALTH, cb=on_input))
        self._subs.append(await nc.subscribe(subjects.ALL_OUTPUT_STATE, cb=on_output))

        async def on_router(msg: Msg) -> None:
            self._on(msg, messages.RouterStatus, self.update_router)

        self._subs.append(await nc.subscribe(subjects.ALL_ROUTER_STATUS, cb=on_router))

    def _on(self, msg: Msg, kind: type[T], update: Callable[[T], None]) -> None:
        try:
            update(messages.decode(msg.data, kind))
        except (msgspec.DecodeError, ValueError):
            log.debug("status.undecodable", extra={"subject": msg.subject})

    async def close(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            try:
                await sub.unsubscribe()
            except Exception:  # connection already closed: nothing left to undo
                log.debug("status.unsubscribe_failed", exc_info=True)
