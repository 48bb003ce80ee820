"""Vault fixtures: the vault service in-process against the session's real nats-server, with its own
SQLite database and a generated master key file under the test's tmp dir."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.aio.client import Client
from sqlalchemy.engine import Engine

from services.orchestrator.db import create_engine
from services.vault import master_keys
from services.vault.service import VaultService
from shared import bus, netguard, subjects
from shared.messages import EventSpec, OutputSpec, encode
from shared.vault_client import VaultClient
from tests.peers.nats_server import NatsServer

ALLOW_LOOPBACK = "127.0.0.0/8,::1/128"


@dataclass
class Vault:
    service: VaultService
    client: VaultClient
    nc: Client
    engine: Engine
    data_dir: Path
    db_path: Path

    async def publish_output(self, tenant_id: str, event_id: str, output_id: str, credential_id: str) -> None:
        """Desired state in which ``output_id`` references ``credential_id``."""
        spec = EventSpec(
            tenant_id=tenant_id,
            id=event_id,
            name="show",
            state="live",
            outputs=(
                OutputSpec(
                    id=output_id, name="dest", url="rtmp://example.com/app", credential_id=credential_id
                ),
            ),
        )
        kv = await bus.desired_bucket(self.nc)
        await kv.put(subjects.desired_event_key(event_id), encode(spec))


def ids(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


async def start_vault(
    nc: Client, tmp_path: Path, environ: dict[str, str] | None = None
) -> tuple[VaultService, Engine]:
    data_dir = tmp_path / "var"
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(f"sqlite:///{data_dir / 'fanout.db'}")
    master = master_keys.load(data_dir, environ or {})
    service = VaultService(nc, engine, master, netguard.Allowlist.parse(ALLOW_LOOPBACK), probe_timeout=5)
    await service.start()
    return service, engine


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    conn = await bus.connect(nats_server.url, "vault-test")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def vault(nc: Client, tmp_path: Path) -> AsyncIterator[Vault]:
    service, engine = await start_vault(nc, tmp_path)
    try:
        yield Vault(service, VaultClient(nc), nc, engine, tmp_path / "var", tmp_path / "var" / "fanout.db")
    finally:
        await service.close()
        engine.dispose()
