"""Listen to a running stack's NATS from a sync test: every message on the subjects asked for, decoded.

It runs its own asyncio loop in a daemon thread (like the TCP proxy), so a test can read what services
said on the bus (state transitions, worker stats) with exact timing instead of polling the API::

    with BusTap(stack.nats_url) as tap:
        tap.subscribe(subjects.ALL_OUTPUT_STATE, OutputStatus)
        ...
        statuses = tap.received(OutputStatus)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, Self, TypeVar

import nats
from nats.aio.client import Client

from shared.messages import decode

T = TypeVar("T")


class BusTap:
    def __init__(self, url: str) -> None:
        self.url = url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bus-tap", daemon=True)
        self._nc: Client | None = None
        self._lock = threading.Lock()
        self._received: dict[type, list[tuple[float, Any]]] = {}

    def start(self) -> Self:
        self._thread.start()
        self._call(self._connect())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._nc is not None:
            try:
                self._call(self._nc.close(), timeout=5)
            except Exception:
                pass  # the stack may already be gone
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def subscribe(self, subject: str, kind: type[T]) -> None:
        """Record every message on ``subject`` (wildcards allowed) decoded as ``kind``."""
        self._call(self._subscribe(subject, kind))

    def received(self, kind: type[T], where: Callable[[T], bool] = lambda _: True) -> list[T]:
        return [m for _, m in self.timed(kind) if where(m)]

    def timed(self, kind: type[T]) -> list[tuple[float, T]]:
        """(monotonic arrival time, message), oldest first."""
        with self._lock:
            return list(self._received.get(kind, []))

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _connect(self) -> None:
        self._nc = await nats.connect(self.url, name="test-bus-tap", max_reconnect_attempts=3)

    async def _subscribe(self, subject: str, kind: type[T]) -> None:
        assert self._nc is not None

        async def on(msg: Any) -> None:
            try:
                value = decode(msg.data, kind)
            except Exception:
                return
            with self._lock:
                self._received.setdefault(kind, []).append((time.monotonic(), value))

        await self._nc.subscribe(subject, cb=on)
        await self._nc.flush()
