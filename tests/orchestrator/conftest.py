"""Orchestrator fixtures: a database per test (SQLite in tmp; PostgreSQL in a fresh schema too when
``FANOUT_TEST_DATABASE_URL`` is set) and the API served in-process against the real nats-server."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from nats.aio.client import Client

from services.orchestrator import db, server
from services.vault import master_keys
from services.vault.service import VaultService
from shared import bus, netguard
from shared.config import Settings
from tests.peers.nats_server import NatsServer

PG_ENV = "FANOUT_TEST_DATABASE_URL"
LOOPBACK_ALLOWLIST = "127.0.0.0/8,::1/128"
TABLES = ("tenants", "api_keys", "events", "inputs", "outputs")


@contextlib.contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh schema on the test server; yields a URL whose connections use it. Dropped afterwards."""
    schema = "t_" + secrets.token_hex(6)
    admin = sa.create_engine(base_url)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        sep = "&" if "?" in base_url else "?"
        yield f"{base_url}{sep}options={urllib.parse.quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """None means the default: SQLite under the data dir."""
    if request.param == "sqlite":
        yield None
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set")
    with postgres_schema(base) as url:
        yield url


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    @property
    def error(self) -> dict[str, Any]:
        assert isinstance(self.body, dict) and "error" in self.body, self.body
        return dict(self.body["error"])


@dataclass
class Api:
    client: TestClient  # type: ignore[type-arg]
    orchestrator: server.Orchestrator
    settings: Settings
    nc: Client
    admin_key: str
    shown_keys: list[str] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        key: str | None = "admin",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["Authorization"] = f"Bearer {self.admin_key if key == 'admin' else key}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        if data is not None:
            hdrs.setdefault("Content-Type", "application/json")
        resp = await self.client.request(method, path, data=data, headers=hdrs)
        text = await resp.text()
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Reply(resp.status, parsed, resp.headers)

    async def ok(self, method: str, path: str, body: Any = None, key: str | None = "admin") -> Any:
        reply = await self.call(method, path, body, key)
        assert 200 <= reply.status < 300, f"{method} {path} -> {reply.status} {reply.body}"
        return reply.body

    async def new_tenant_key(self, name: str | None = None) -> str:
        tenant = await self.ok("POST", "/v1/tenants", {"name": name or "tenant-" + secrets.token_hex(4)})
        created = await self.ok("POST", f"/v1/tenants/{tenant['id']}/keys")
        return str(created["key"])

    async def event_with_everything(self, key: str = "admin") -> dict[str, Any]:
        """An event with a primary input, one output and a credential no output uses; returns ids."""
        ev = await self.ok("POST", "/v1/events", {"name": "show"}, key)
        inp = await self.ok(
            "POST", f"/v1/events/{ev['id']}/inputs", {"role": "primary", "protocol": "rtmp"}, key
        )
        out = await self.ok(
            "POST",
            f"/v1/events/{ev['id']}/outputs",
            {"name": "yt", "url": "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop", "class": "B"},
            key,
        )
        cred = await self.ok(
            "POST",
            "/v1/credentials",
            {"name": "spare", "kind": "stream_key", "value": "live_5_SpareKey00000001"},
            key,
        )
        return {
            "event_id": ev["id"],
            "input_id": inp["id"],
            "output_id": out["id"],
            "stream_key": inp["stream_key"],
            "credential_id": cred["id"],
        }

    def counts(self) -> dict[str, int]:
        return table_counts(self.orchestrator.engine)


def table_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: int(conn.scalar(sa.select(sa.func.count()).select_from(db.metadata.tables[t])) or 0)
            for t in TABLES
        }


def make_settings(tmp_path: Path, nats_url: str, database_url: str | None, admin_key: str | None) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        nats_url=nats_url,
        database_url=database_url,
        admin_key=admin_key,
        public_host="media.example.com",
        rtmp_port=1935,
        http_port=0,
        destination_allowlist=LOOPBACK_ALLOWLIST,  # tests deliver to loopback peers, as the e2e stack does
    )


async def start_vault(settings: Settings, nc: Client, stack: contextlib.AsyncExitStack) -> VaultService:
    """The vault in-process, on the orchestrator's database (tables of its own), keys under the data dir."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = db.create_engine(settings.effective_database_url)
    stack.callback(engine.dispose)
    keys = master_keys.load(settings.data_dir, {})
    vault = VaultService(nc, engine, keys, netguard.Allowlist.parse(settings.destination_allowlist))
    await vault.start()
    stack.push_async_callback(vault.close)
    return vault


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    conn = await bus.connect(nats_server.url, "orchestrator-test")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def api(
    tmp_path: Path, nats_server: NatsServer, nc: Client, database_url: str | None
) -> AsyncIterator[Api]:
    admin_key = "test-admin-" + secrets.token_hex(12)
    settings = make_settings(tmp_path, nats_server.url, database_url, admin_key)
    shown: list[str] = []
    async with contextlib.AsyncExitStack() as stack:
        await start_vault(settings, nc, stack)
        orchestrator = await server.start(settings, nc, stack, show_key=shown.append)
        client = TestClient(TestServer(orchestrator.app))
        await client.start_server()
        stack.push_async_callback(client.close)
        yield Api(client, orchestrator, settings, nc, admin_key, shown)
