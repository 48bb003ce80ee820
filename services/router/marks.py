"""Where each event's program timeline stands, kept in JetStream KV so a restarted router continues it.

Destinations saw program timestamps up to some DTS; a router that restarts must not start again from
the input's own clock (time would go backwards at every destination). Each router saves a
``ProgramMark`` about every second and after every replayed switch; a new router resumes from it.
Failures are logged and skipped: the mark is an optimisation of continuity, never a reason to stop.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from shared import bus, subjects
from shared.messages import ProgramMark, decode, encode

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0


def to_wall(monotonic_s: float) -> float:
    return time.time() - (time.monotonic() - monotonic_s)


def to_monotonic(wall_s: float) -> float:
    return time.monotonic() - (time.time() - wall_s)


class ProgramMarks:
    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await bus.program_bucket(self._nc)
        return self._kv

    async def load(self, event_id: str) -> ProgramMark | None:
        try:
            kv = await asyncio.wait_for(self._bucket(), TIMEOUT_S)
            entry = await asyncio.wait_for(kv.get(subjects.program_mark_key(event_id)), TIMEOUT_S)
        except KeyNotFoundError:
            return None
        except Exception as exc:
            self._kv = None
            log.warning("router.mark_load_failed", extra={"event_id": event_id, "error": repr(exc)})
            return None
        if not entry.value:
            return None
        try:
            return decode(entry.value, ProgramMark)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def save(self, event_id: str, mark: ProgramMark) -> None:
        try:
            kv = await asyncio.wait_for(self._bucket(), TIMEOUT_S)
            await asyncio.wait_for(kv.put(subjects.program_mark_key(event_id), encode(mark)), TIMEOUT_S)
        except Exception as exc:
            self._kv = None
            log.warning("router.mark_save_failed", extra={"event_id": event_id, "error": repr(exc)})

    async def forget(self, event_id: str) -> None:
        try:
            kv = await asyncio.wait_for(self._bucket(), TIMEOUT_S)
            await asyncio.wait_for(kv.delete(subjects.program_mark_key(event_id)), TIMEOUT_S)
        except Exception as exc:
            log.warning("router.mark_forget_failed", extra={"event_id": event_id, "error": repr(exc)})
