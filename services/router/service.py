"""Router service: one EventRouter per event that is not stopped, reconciled from desired state.

A restarted router rebuilds every event's router from desired state (policy and lock included) and
puts on air whichever input delivers, the primary first.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from shared.desired import DesiredState
from shared.messages import EventSpec
from shared.service import ServiceContext

from .event_router import EventRouter
from .marks import ProgramMarks

log = logging.getLogger(__name__)


class RouterService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self.routers: dict[str, EventRouter] = {}
        # content analysis (decoding sampled frames) for every event: one thread, bounded by design
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="content")
        self._marks = ProgramMarks(ctx.nc)

    async def on_change(self, event_id: str, old: EventSpec | None, new: EventSpec | None) -> None:
        wanted = new is not None and new.state != "stopped" and bool(new.inputs)
        current = self.routers.get(event_id)
        if not wanted:
            if current is not None:
                await self.routers.pop(event_id).stop(forget=True)
            return
        assert new is not None
        if current is None:
            router = EventRouter(self._ctx.nc, new, self._pool, self._marks)
            self.routers[event_id] = router
            await router.start()
        else:
            await current.update(new)

    async def close(self) -> None:
        for router in list(self.routers.values()):
            await router.stop()
        self.routers.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)


async def main(ctx: ServiceContext) -> None:
    service = RouterService(ctx)
    desired = DesiredState(ctx.nc, service.on_change)
    ctx.stack.push_async_callback(service.close)
    ctx.spawn(desired.run(), "desired-watch")
