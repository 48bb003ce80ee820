"""Output leases: a worker runs an output only while it holds the output's lease.

A lease is a key in the ``fanout_leases`` KV bucket (``output.<id>`` -> worker id) whose bucket TTL
(15 s) makes it lapse when its holder stops renewing, so another worker can take the output over.
A worker acquires with create-if-absent; a key that already names this worker (a restarted worker
with the same ``FANOUT_WORKER_ID``) is taken back at once. It renews every ~5 s with a compare-and-set
on the revision it holds, and releases on stop. The vault resolves an output's credential only for
the lease's holder.

``plan`` and ``after_renew`` are the pure decisions; ``LeaseKeeper`` is the KV shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable

from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from . import subjects

log = logging.getLogger(__name__)

RENEW_EVERY_S = 5.0


class Plan(enum.Enum):
    CREATE = "create"  # nobody holds it: create-if-absent
    RECLAIM = "reclaim"  # it names us (a restart with the same worker id): compare-and-set it
    WAIT = "wait"  # another worker holds it: try again when it may have lapsed


def plan(holder: str | None, me: str) -> Plan:
    if holder is None or holder == "":
        return Plan.CREATE
    return Plan.RECLAIM if holder == me else Plan.WAIT


class Renewal(enum.Enum):
    RENEWED = "renewed"
    RETRY = "retry"  # it lapsed or changed under us but may be ours again: acquire again
    LOST = "lost"  # another worker holds it now


def after_renew(conflict: bool, holder: str | None, me: str) -> Renewal:
    """What a renew that failed its compare-and-set (``conflict``) or found nothing means."""
    if not conflict:
        return Renewal.RENEWED
    return Renewal.LOST if plan(holder, me) is Plan.WAIT else Renewal.RETRY


async def holder(kv: KeyValue, output_id: str) -> str | None:
    """The worker id holding the output's lease, or None."""
    try:
        entry = await kv.get(subjects.lease_key(output_id))
    except KeyNotFoundError:
        return None
    return entry.value.decode() if entry.value else None


OnChange = Callable[[str], Awaitable[None]]


class LeaseKeeper:
    """Holds this worker's leases: ``want`` one to run an output, ``unwant`` to release it.

    Outputs wanted but held elsewhere are retried on every tick; ``on_acquired``/``on_lost`` are awaited
    when a lease is won later or taken away, so the caller starts or stops the output.
    """

    def __init__(
        self,
        kv: KeyValue,
        worker: str,
        on_acquired: OnChange | None = None,
        on_lost: OnChange | None = None,
        renew_every: float = RENEW_EVERY_S,
    ) -> None:
        self._kv = kv
        self.worker = worker
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self.renew_every = renew_every
        self.held: dict[str, int] = {}  # output id -> revision of our entry
        self.wanted: set[str] = set()
        self._lock = asyncio.Lock()

    def holds(self, output_id: str) -> bool:
        return output_id in self.held

    async def want(self, output_id: str) -> bool:
        """Ask for the output's lease; True when this worker holds it now."""
        async with self._lock:
            self.wanted.add(output_id)
            return await self._acquire(output_id)

    async def unwant(self, output_id: str) -> None:
        """Release the lease (only if it is still ours) and stop asking for it."""
        async with self._lock:
            self.wanted.discard(output_id)
            revision = self.held.pop(output_id, None)
            if revision is not None:
                with contextlib.suppress(Exception):
                    await self._kv.delete(subjects.lease_key(output_id), last=revision)
                    log.info("lease.released", extra={"output_id": output_id, "worker": self.worker})

    async def _acquire(self, output_id: str) -> bool:
        key, me = subjects.lease_key(output_id), self.worker.encode()
        for _ in range(3):
            try:
                entry = await self._kv.get(key)
                current: str | None = entry.value.decode() if entry.value else None
                revision = entry.revision or 0
            except KeyNotFoundError:
                current, revision = None, 0
            step = plan(current, self.worker)
            try:
                if step is Plan.WAIT:
                    self.held.pop(output_id, None)
                    return False
                if step is Plan.CREATE:
                    new_revision = await self._kv.create(key, me)
                else:
                    new_revision = await self._kv.update(key, me, last=revision)
            except (KeyWrongLastSequenceError, APIError):
                continue  # someone wrote in between: look again
            first = output_id not in self.held
            self.held[output_id] = new_revision
            if first:
                log.info(
                    "lease.acquired", extra={"output_id": output_id, "worker": self.worker, "how": step.value}
                )
            return True
        return False

    async def _renew(self, output_id: str) -> None:
        revision = self.held.get(output_id)
        if revision is None:
            return
        key = subjects.lease_key(output_id)
        try:
            self.held[output_id] = await self._kv.update(key, self.worker.encode(), last=revision)
            return
        except (KeyWrongLastSequenceError, APIError):
            pass
        current = await holder(self._kv, output_id)
        if after_renew(True, current, self.worker) is Renewal.RETRY and await self._acquire(output_id):
            return
        self.held.pop(output_id, None)
        log.warning("lease.lost", extra={"output_id": output_id, "worker": self.worker, "holder": current})
        if self._on_lost is not None:
            await self._on_lost(output_id)

    async def tick(self) -> None:
        """Renew what we hold; try again for what we want but another worker held."""
        async with self._lock:
            for output_id in list(self.held):
                await self._renew(output_id)
            gained = [o for o in sorted(self.wanted - set(self.held)) if await self._acquire(o)]
        for output_id in gained:
            if self._on_acquired is not None:
                await self._on_acquired(output_id)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away for a moment: leases are renewed on the next tick
                log.warning("lease.tick_failed", extra={"worker": self.worker, "error": repr(exc)})

    async def release_all(self) -> None:
        for output_id in list(self.held):
            await self.unwant(output_id)
