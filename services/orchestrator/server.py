"""Wiring: database, migrations, admin key, status cache, desired state and the API, on one exit stack.

``start`` does everything but listen, so tests can serve the app in-process; ``__main__`` binds it to
``settings.bind_host:settings.http_port``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from nats.aio.client import Client
from nats.js.kv import KeyValue
from sqlalchemy.engine import Engine

from shared import bus
from shared.config import Settings
from shared.vault_client import VaultClient

from . import auth, db, migrations
from .api import create_app
from .commands import RouterCommands
from .credentials import KeyMover
from .desired import DesiredState
from .output_events import AutoDisableRecorder
from .status import StatusCache

log = logging.getLogger(__name__)


@dataclass
class Orchestrator:
    app: web.Application
    engine: Engine
    desired: DesiredState
    status: StatusCache


def show_admin_key(key: str) -> None:
    # stdout, not the log: the key must not end up in a log pipeline
    print(f"Admin API key (shown once, store it): {key}", flush=True)


async def start(
    settings: Settings,
    nc: Client,
    stack: contextlib.AsyncExitStack,
    show_key: Callable[[str], None] = show_admin_key,
) -> Orchestrator:
    url = settings.effective_database_url
    if url.startswith("sqlite") and not settings.database_url:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = db.create_engine(url)
    stack.callback(engine.dispose)
    applied = await asyncio.to_thread(migrations.migrate, engine)
    log.info("db.ready", extra={"dialect": engine.dialect.name, "migrations_applied": applied})
    generated = await asyncio.to_thread(auth.ensure_admin, engine, settings.admin_key)
    if generated is not None:
        show_key(generated)

    status = StatusCache()
    await status.subscribe(nc)
    stack.push_async_callback(status.close)

    async def open_bucket() -> KeyValue:
        return await bus.desired_bucket(nc)

    desired = DesiredState(engine, open_bucket)
    await desired.republish_all()
    desired.start()
    stack.push_async_callback(desired.close)
    mover = KeyMover(engine, VaultClient(nc), desired.publish)  # keys stored before the vault move into it
    mover.start()
    stack.push_async_callback(mover.close)
    recorder = AutoDisableRecorder(engine, desired)
    await recorder.subscribe(nc)
    stack.push_async_callback(recorder.close)
    return Orchestrator(
        app=create_app(settings, engine, desired, status, RouterCommands(nc), VaultClient(nc)),
        engine=engine,
        desired=desired,
        status=status,
    )


async def serve(
    orchestrator: Orchestrator, settings: Settings, stack: contextlib.AsyncExitStack
) -> web.AppRunner:
    runner = web.AppRunner(orchestrator.app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, settings.bind_host, settings.http_port)
    await site.start()
    log.info("api.listening", extra={"host": settings.bind_host, "port": settings.http_port})
    return runner
