"""Runs each service as its own process; restarts one that crashes, stops them all on request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from .children import SPAWN_OPTIONS

log = logging.getLogger(__name__)

RESTART_FIRST_S = 0.5
RESTART_CAP_S = 10.0
HEALTHY_AFTER_S = 30.0
STOP_GRACE_S = 10.0


@dataclass
class Child:
    name: str
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0
    delay: float = RESTART_FIRST_S
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, base_env: dict[str, str]) -> None:
        self._base_env = base_env
        self.children: list[Child] = []
        self._stopping = False

    def add(self, name: str, env_overrides: dict[str, str] | None = None) -> Child:
        env = {**self._base_env, "FANOUT_WORKER_ID": f"{name}-1", **(env_overrides or {})}
        child = Child(name=name, env=env)
        self.children.append(child)
        return child

    async def _spawn(self, child: Child) -> None:
        child.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", f"services.{child.name}", env=child.env, **SPAWN_OPTIONS
        )
        child.started_at = time.monotonic()
        log.info("launcher.started", extra={"child": child.name, "pid": child.proc.pid})

    async def _keep(self, child: Child) -> None:
        while not self._stopping:
            await self._spawn(child)
            assert child.proc is not None
            code = await child.proc.wait()
            if self._stopping:
                return
            if time.monotonic() - child.started_at > HEALTHY_AFTER_S:
                child.delay = RESTART_FIRST_S
            log.warning(
                "launcher.child_exited",
                extra={"child": child.name, "code": code, "restart_in_s": child.delay},
            )
            child.restarts += 1
            await asyncio.sleep(child.delay)
            child.delay = min(RESTART_CAP_S, child.delay * 2)

    def start(self) -> None:
        for child in self.children:
            child.task = asyncio.ensure_future(self._keep(child))

    async def stop(self) -> None:
        self._stopping = True
        for child in reversed(self.children):
            if child.proc is not None and child.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for child in self.children:
            if child.proc is None:
                continue
            try:
                await asyncio.wait_for(child.proc.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("launcher.kill", extra={"child": child.name})
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
                await child.proc.wait()
        for child in self.children:
            if child.task is not None:
                child.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await child.task


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
