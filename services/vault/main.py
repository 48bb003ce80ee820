"""Vault service entry: its database (its own tables), its master keys, its NATS subscriptions.

``FANOUT_VAULT_DATABASE_URL`` gives the vault a database of its own; by default it shares the
orchestrator's (``FANOUT_DATABASE_URL`` or the SQLite file under the data dir), in tables of its own.
"""

from __future__ import annotations

import os

from services.orchestrator.db import create_engine
from shared import netguard
from shared.service import ServiceContext

from . import master_keys
from .service import VaultService

DATABASE_ENV = "FANOUT_VAULT_DATABASE_URL"


async def main(ctx: ServiceContext) -> None:
    settings = ctx.settings
    url = os.environ.get(DATABASE_ENV) or settings.effective_database_url
    if url.startswith("sqlite") and not (os.environ.get(DATABASE_ENV) or settings.database_url):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        master = master_keys.load(settings.data_dir)
        allowlist = netguard.Allowlist.parse(settings.destination_allowlist)
    except ValueError as exc:
        raise SystemExit(f"vault: {exc}") from None
    engine = create_engine(url)
    ctx.stack.callback(engine.dispose)
    service = VaultService(ctx.nc, engine, master, allowlist, settings.tls_ca_file)
    await service.start()
    ctx.stack.push_async_callback(service.close)
