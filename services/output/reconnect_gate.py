"""A per-process cap on connection attempts running at once, so a retry storm cannot starve live outputs.

When many destinations fail together (a platform outage, a network blip), each one's connect, TLS
handshake and publish costs event-loop time the live destinations need. At most ``cap`` attempts run
at once; the rest wait in line, higher class priority first (1 before 2), then in arrival order.
The counters are what the worker reports: ``active``, ``waiting`` and ``max_active`` (the most ever
running at once, which never exceeds ``cap``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ReconnectGate:
    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError("the reconnect cap must be at least 1")
        self.cap = cap
        self.active = 0
        self.max_active = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, fut in self._waiters if not fut.done())

    @asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if self.active < self.cap and not self.waiting:
            self._take()
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()  # the slot was handed over just as we were cancelled: pass it on
            raise

    def _take(self) -> None:
        self.active += 1
        self.max_active = max(self.max_active, self.active)

    def _release(self) -> None:
        self.active -= 1
        while self._waiters and self.active < self.cap:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                self._take()
                fut.set_result(None)
