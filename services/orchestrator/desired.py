"""Desired state: the database's events as ``EventSpec``s in JetStream KV, where workers watch them.

The database is the truth; KV is a published copy. A change is committed first and published second,
and a publish always re-reads the event from the database under one lock, so whichever publish runs
last writes the latest state and two racing requests cannot leave an older spec in KV. A failed
publish is remembered and retried in the background, and on startup every event is republished
(and keys of events that no longer exist are deleted), so a wiped bucket is rebuilt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.js.errors import NoKeysError
from nats.js.kv import KeyValue
from sqlalchemy.engine import Engine

from shared import messages, subjects

from . import store

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
RETRY_INTERVAL_S = 2.0
_KEY_PREFIX = subjects.desired_event_key("x")[:-1]  # "event."


def _is_event_key(key: str) -> bool:
    try:
        return key == subjects.desired_event_key(key.removeprefix(_KEY_PREFIX))
    except ValueError:
        return False


class PublishFailed(Exception):
    """The database has the change but KV does not have it yet; it will be retried."""


def event_spec(detail: store.EventDetail) -> messages.EventSpec:
    event = detail.event
    return messages.EventSpec(
        tenant_id=event.tenant_id,
        id=event.id,
        name=event.name,
        state=event.state,  # type: ignore[arg-type]
        inputs=tuple(
            messages.InputSpec(
                id=i.id,
                role=i.role,  # type: ignore[arg-type]
                protocol=i.protocol,
                key_hash=i.key_hash,
                passphrase=i.passphrase,  # set only until the start moves it to the vault
                pbkeylen=i.pbkeylen,
                latency_ms=i.latency_ms,
                credential_id=i.credential_id or "",
                credential_version=i.credential_version,
            )
            for i in detail.inputs
        ),
        outputs=tuple(
            messages.OutputSpec(
                id=o.id,
                name=o.name,
                url=o.url,
                dest_class=o.dest_class,  # type: ignore[arg-type]
                enabled=o.enabled,
                auto_disabled=o.auto_disabled or "",
                generation=o.generation,
                credential_id=o.credential_id or "",
                profile=o.profile,
            )
            for o in detail.outputs
        ),
        profiles=detail.profiles,
        revision=event.revision,
        failover=failover_policy(event.failover),
        locked_input=event.locked_input,
    )


def failover_policy(stored: str) -> messages.FailoverPolicy:
    """The stored policy JSON (validated by the API when it was written); defaults when empty."""
    if not stored:
        return messages.FailoverPolicy()
    return messages.decode(stored.encode(), messages.FailoverPolicy)


class DesiredState:
    def __init__(self, engine: Engine, open_bucket: Callable[[], Awaitable[KeyValue]]) -> None:
        self._engine = engine
        self._open_bucket = open_bucket
        self._kv: KeyValue | None = None
        self._lock = asyncio.Lock()
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> frozenset[str]:
        return frozenset(self._pending)

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self._open_bucket()
        return self._kv

    async def publish(self, event_id: str) -> None:
        """Write the event's current spec to KV (or delete its key when it is gone)."""
        async with self._lock:
            try:
                await asyncio.wait_for(self._publish_locked(event_id), PUBLISH_TIMEOUT_S)
            except Exception as exc:
                self._kv = None  # the bucket may have been deleted: open (or create) it again next time
                self._pending.add(event_id)
                self._wake.set()
                log.warning("desired.publish_failed", extra={"event_id": event_id, "error": repr(exc)})
                raise PublishFailed(event_id) from exc
            self._pending.discard(event_id)

    async def _publish_locked(self, event_id: str) -> None:
        kv = await self._bucket()
        key = subjects.desired_event_key(event_id)
        detail = await asyncio.to_thread(store.load_event, self._engine, event_id)
        if detail is None:
            await kv.delete(key)
            log.info("desired.deleted", extra={"event_id": event_id})
            return
        spec = event_spec(detail)
        await kv.put(key, messages.encode(spec))
        log.info(
            "desired.published",
            extra={
                "event_id": event_id,
                "tenant_id": spec.tenant_id,
                "revision": spec.revision,
                "state": spec.state,
            },
        )

    async def republish_all(self) -> None:
        """Publish every event and delete keys of events the database no longer has."""
        ids = await asyncio.to_thread(store.event_ids, self._engine)
        async with self._lock:
            keys = await self._keys()
        stale = {k.removeprefix(_KEY_PREFIX) for k in keys if _is_event_key(k)} - set(ids)
        failed = 0
        for event_id in [*ids, *sorted(stale)]:
            try:
                await self.publish(event_id)
            except PublishFailed:
                failed += 1
        log.info(
            "desired.republished", extra={"events": len(ids), "stale_deleted": len(stale), "failed": failed}
        )

    async def _keys(self) -> list[str]:
        for attempt in (1, 2):
            kv = await self._bucket()
            try:
                return await kv.keys()
            except NoKeysError:
                return []
            except Exception:
                self._kv = None  # a deleted bucket: open (or create) it again, once
                if attempt == 2:
                    raise
        return []

    def start(self) -> None:
        self._task = asyncio.create_task(self._retry_loop(), name="desired-retry")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _retry_loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(RETRY_INTERVAL_S)  # ok-sleep: back off between retries of a failed publish
            self._wake.clear()
            for event_id in sorted(self._pending):
                with contextlib.suppress(PublishFailed):
                    await self.publish(event_id)
