"""A worker's mirror of desired state: every EventSpec from the KV bucket, kept current by a watch.

Workers reconcile toward it: ``on_change(event_id, old, new)`` is awaited for every change in order
(``new`` is None when the event was deleted). A restarted worker gets the whole state first, so it
rebuilds itself from desired state and nothing lives only in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import msgspec
from nats.aio.client import Client

from . import bus
from .messages import EventSpec, decode

log = logging.getLogger(__name__)

OnChange = Callable[[str, EventSpec | None, EventSpec | None], Awaitable[None]]


class DesiredState:
    def __init__(self, nc: Client, on_change: OnChange) -> None:
        self._nc = nc
        self._on_change = on_change
        self.events: dict[str, EventSpec] = {}
        self.ready = asyncio.Event()

    async def run(self) -> None:
        while True:
            try:
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the KV stream can go away with a NATS restart; watch again
                log.warning("desired.watch_failed", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)

    async def _watch(self) -> None:
        kv = await bus.desired_bucket(self._nc)
        watcher = await kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    self.ready.set()
                    continue
                event_id = entry.key.removeprefix("event.")
                old = self.events.get(event_id)
                new: EventSpec | None = None
                if entry.operation is None and entry.value:
                    try:
                        new = decode(entry.value, EventSpec)
                    except msgspec.ValidationError as exc:
                        log.error("desired.bad_entry", extra={"key": entry.key, "error": str(exc)})
                        continue
                if new is None:
                    self.events.pop(event_id, None)
                else:
                    self.events[event_id] = new
                if old != new:
                    try:
                        await self._on_change(event_id, old, new)
                    except Exception:
                        log.exception("desired.reconcile_failed", extra={"event_id": event_id})
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
