"""The thin shell every service runs in: logging, one NATS connection, signals, clean shutdown.

A service is an async callable ``main(ctx)`` that sets things up on ``ctx.stack`` and returns; the
shell then waits for SIGTERM/SIGINT and unwinds the stack (subscriptions drain, then the connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client

from . import bus, config, logs

log = logging.getLogger(__name__)


@dataclass
class ServiceContext:
    name: str
    settings: config.Settings
    nc: Client
    stack: contextlib.AsyncExitStack
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        """Run a background loop for the life of the service; a crash in it stops the service."""
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)

        def done(t: asyncio.Task[None]) -> None:
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                log.error("service.task_crashed", extra={"task": name}, exc_info=exc)
                self.stopping.set()

        task.add_done_callback(done)
        self.tasks.append(task)
        return task


async def _run(name: str, main: Callable[[ServiceContext], Awaitable[None]]) -> int:
    settings = config.load()
    logs.setup(name, settings.log_level)
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    nc = await bus.connect(settings.effective_nats_url, name=f"fanout-{name}")
    async with contextlib.AsyncExitStack() as stack:
        ctx = ServiceContext(name=name, settings=settings, nc=nc, stack=stack, stopping=stopping)
        try:
            await main(ctx)
            log.info("service.started", extra={"worker": settings.worker_id})
            await stopping.wait()
            log.info("service.stopping")
        finally:
            for task in ctx.tasks:
                task.cancel()
            for task in ctx.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
    with contextlib.suppress(Exception):
        await asyncio.wait_for(nc.drain(), timeout=5)
    log.info("service.stopped")
    return 0


def run(name: str, main: Callable[[ServiceContext], Awaitable[None]]) -> None:
    raise SystemExit(asyncio.run(_run(name, main)))
