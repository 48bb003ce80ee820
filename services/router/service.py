"""Router service: one EventRouter per event that is not stopped, reconciled from desired state."""

from __future__ import annotations

import logging

from shared.desired import DesiredState
from shared.messages import EventSpec
from shared.service import ServiceContext

from .event_router import EventRouter

log = logging.getLogger(__name__)


class RouterService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self.routers: dict[str, EventRouter] = {}

    async def on_change(self, event_id: str, old: EventSpec | None, new: EventSpec | None) -> None:
        wanted = new is not None and new.state != "stopped" and bool(new.inputs)
        current = self.routers.get(event_id)
        if not wanted:
            if current is not None:
                await self.routers.pop(event_id).stop()
            return
        assert new is not None
        if current is None:
            router = EventRouter(self._ctx.nc, new)
            self.routers[event_id] = router
            await router.start()
        else:
            current.update(new)

    async def close(self) -> None:
        for router in list(self.routers.values()):
            await router.stop()
        self.routers.clear()


async def main(ctx: ServiceContext) -> None:
    service = RouterService(ctx)
    desired = DesiredState(ctx.nc, service.on_change)
    ctx.stack.push_async_callback(service.close)
    ctx.spawn(desired.run(), "desired-watch")
