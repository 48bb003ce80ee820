"""The vault's audit trail: one ``AuditRecord`` per operation on a durable JetStream stream.

``record`` waits for the stream's acknowledgement (PubAck), so a caller knows the record is stored;
a resolve whose record cannot be stored is refused. Records never carry a value.
"""

from __future__ import annotations

import logging
import time

import msgspec
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from shared import subjects
from shared.vault_messages import AuditRecord, encode

log = logging.getLogger(__name__)

RETENTION_S = 400 * 86400  # a little over a year
MAX_BYTES = 1024 * 1024 * 1024


class AuditUnavailable(Exception):
    pass


async def ensure_stream(js: JetStreamContext) -> None:
    try:
        await js.stream_info(subjects.AUDIT_STREAM)
    except NotFoundError:
        await js.add_stream(
            StreamConfig(
                name=subjects.AUDIT_STREAM,
                subjects=[subjects.ALL_AUDIT],
                storage=StorageType.FILE,
                max_age=RETENTION_S,
                max_bytes=MAX_BYTES,
                discard=DiscardPolicy.OLD,
            )
        )
        log.info("vault.audit_stream_created", extra={"stream": subjects.AUDIT_STREAM})


class Auditor:
    def __init__(self, js: JetStreamContext, timeout: float = 2.0) -> None:
        self._js = js
        self._timeout = timeout

    async def record(self, record: AuditRecord) -> None:
        """Store the record; raises AuditUnavailable when the stream did not acknowledge it."""
        if not record.ts:
            record = msgspec.structs.replace(record, ts=time.time())
        try:
            await self._js.publish(
                subjects.vault_audit(record.tenant_id),
                encode(record),
                timeout=self._timeout,
                stream=subjects.AUDIT_STREAM,
            )
        except Exception as exc:
            log.error("vault.audit_failed", extra={"op": record.op, "error": type(exc).__name__})
            raise AuditUnavailable(type(exc).__name__) from None

    async def try_record(self, record: AuditRecord) -> bool:
        try:
            await self.record(record)
        except AuditUnavailable:
            return False
        return True
