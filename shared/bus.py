"""NATS connection and JetStream key-value helpers shared by every service."""

from __future__ import annotations

import logging

import nats
from nats.aio.client import Client
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from . import subjects

log = logging.getLogger(__name__)

LEASE_TTL_S = 15.0
PROGRAM_MARK_TTL_S = 3600.0


async def connect(url: str, name: str) -> Client:
    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", extra={"error": str(exc)})

    async def on_disconnected() -> None:
        log.warning("nats.disconnected")

    async def on_reconnected() -> None:
        log.info("nats.reconnected")

    return await nats.connect(
        url,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        pending_size=64 * 1024 * 1024,
    )


async def _bucket(nc: Client, name: str, **config: object) -> KeyValue:
    js = nc.jetstream()
    try:
        return await js.key_value(name)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=name, storage=StorageType.FILE, **config))  # type: ignore[arg-type]


async def desired_bucket(nc: Client) -> KeyValue:
    return await _bucket(nc, subjects.KV_DESIRED, history=1)


async def lease_bucket(nc: Client) -> KeyValue:
    return await _bucket(nc, subjects.KV_LEASES, history=1, ttl=LEASE_TTL_S)


async def program_bucket(nc: Client) -> KeyValue:
    """Where each event's program timeline stands, so a restarted router continues it."""
    return await _bucket(nc, subjects.KV_PROGRAM, history=1, ttl=PROGRAM_MARK_TTL_S)
