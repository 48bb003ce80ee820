"""Ingest service: RTMP(S) and SRT listeners routed by the stream-key directory from desired state."""

from __future__ import annotations

import asyncio
import logging
import ssl

from shared.desired import DesiredState
from shared.messages import EventSpec
from shared.service import ServiceContext
from shared.vault_client import VaultClient

from .input_secrets import InputSecrets
from .keys import KeyDirectory
from .rtmp_server import RtmpIngest
from .srt_server import SrtIngest

log = logging.getLogger(__name__)


async def main(ctx: ServiceContext) -> None:
    settings = ctx.settings
    keys = KeyDirectory()
    secrets = InputSecrets(VaultClient(ctx.nc), settings.worker_id)
    ingest = RtmpIngest(ctx.nc, keys, settings.worker_id)
    srt = SrtIngest(ctx.nc, keys, secrets, settings.worker_id)

    async def on_change(event_id: str, old: EventSpec | None, new: EventSpec | None) -> None:
        keys.update(event_id, new)
        secrets.update(event_id, new)
        ingest.revalidate()
        srt.revalidate()

    desired = DesiredState(ctx.nc, on_change)
    ctx.spawn(desired.run(), "desired-watch")
    ctx.spawn(secrets.run(), "srt-passphrases")
    ctx.stack.push_async_callback(ingest.close)
    ctx.stack.push_async_callback(srt.close)
    try:
        await asyncio.wait_for(desired.ready.wait(), 15)
    except TimeoutError:
        log.warning("ingest.desired_state_late")  # listen anyway; keys arrive with the watch
    await ingest.listen(settings.bind_host, settings.rtmp_port)
    if settings.tls_cert and settings.tls_key:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(settings.tls_cert, settings.tls_key)
        await ingest.listen(settings.bind_host, settings.rtmps_port, tls)
    ctx.spawn(ingest.housekeeping(), "housekeeping")
    try:
        await srt.listen(settings.bind_host, settings.srt_port)
    except OSError as exc:  # no libsrt, or the UDP port is taken: RTMP ingest still serves
        log.error("ingest.srt_unavailable", extra={"port": settings.srt_port, "error": str(exc)})
    else:
        ctx.spawn(srt.housekeeping(), "srt-housekeeping")
