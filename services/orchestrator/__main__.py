"""``python -m services.orchestrator``: the REST API and desired-state publisher as a service."""

from __future__ import annotations

from shared.service import ServiceContext, run

from . import server


async def main(ctx: ServiceContext) -> None:
    orchestrator = await server.start(ctx.settings, ctx.nc, ctx.stack)
    await server.serve(orchestrator, ctx.settings, ctx.stack)


if __name__ == "__main__":
    run("orchestrator", main)
