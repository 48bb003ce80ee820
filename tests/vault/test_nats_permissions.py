"""deploy/nats-permissions.conf on a real nats-server: the vault serves as its own user; only the
orchestrator may manage credentials, only output workers may resolve outputs' credentials and only
ingest SRT inputs' passphrases; any other user is refused by the server itself, and may not listen on
the vault's subjects."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from services.orchestrator.db import create_engine
from services.vault import master_keys
from services.vault.service import VaultService
from shared import netguard
from shared import vault_messages as vm
from shared.secret import Secret
from shared.vault_client import VaultClient, VaultFailure, VaultUnavailable
from tests.peers.nats_server import NatsServer, start_nats
from tests.peers.ports import free_port
from tests.peers.procs import async_wait_until

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
USERS = ("orchestrator", "vault", "output", "ingest", "router", "transcode")


@dataclass
class Secured:
    server: NatsServer
    passwords: dict[str, str]

    def url(self, user: str, password: str | None = None) -> str:
        return f"nats://{user}:{password or self.passwords[user]}@127.0.0.1:{self.server.port}"


@pytest.fixture
def secured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Secured]:
    passwords = {
        u: "pw" + secrets.token_hex(16) for u in USERS
    }  # nats reads a value starting with a digit as a number
    for user, password in passwords.items():
        monkeypatch.setenv(f"FANOUT_NATS_{user.upper()}_PASSWORD", password)
    text = (ROOT / "deploy" / "nats-permissions.conf").read_text()
    # the file as deployed, on this machine's free ports and a tmp store
    text = text.replace("port: 4222", f"port: {free_port()}").replace(
        "http_port: 8222", f"http_port: {free_port()}"
    )
    text = text.replace("store_dir: /data", "")  # start_nats gives the store on the command line
    server = start_nats(tmp_path, config=text)
    try:
        yield Secured(server, passwords)
    finally:
        server.stop()


@dataclass
class Conn:
    nc: Client
    errors: list[str]


async def connect(url: str) -> Conn:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(url, error_cb=on_error, max_reconnect_attempts=0, connect_timeout=5)
    return Conn(nc, errors)


@pytest.fixture
async def conns(secured: Secured) -> AsyncIterator[dict[str, Conn]]:
    out = {u: await connect(secured.url(u)) for u in ("orchestrator", "output", "ingest", "router")}
    try:
        yield out
    finally:
        for c in out.values():
            await c.nc.close()


@pytest.fixture
async def vault_service(secured: Secured, tmp_path: Path) -> AsyncIterator[VaultService]:
    conn = await connect(secured.url("vault"))
    engine = create_engine(f"sqlite:///{tmp_path / 'vault.db'}")
    service = VaultService(conn.nc, engine, master_keys.load(tmp_path, {}), netguard.Allowlist())
    await service.start()  # creates the audit stream and buckets with the vault user's rights
    try:
        yield service
    finally:
        await service.close()
        await conn.nc.close()
        engine.dispose()
        assert not conn.errors, conn.errors


def violated(conn: Conn, kind: str = "") -> bool:
    return any(f"permissions violation for {kind}".lower() in e.lower() for e in conn.errors)


async def refused(conn: Conn, call: object) -> None:
    """The call gets no answer and the server reports a permissions violation to this client."""
    with pytest.raises(VaultUnavailable):
        await call  # type: ignore[misc]
    await async_wait_until(lambda: violated(conn), 5, "the violation")


async def test_only_the_orchestrator_manages_output_resolves_and_ingest_resolves_inputs(
    vault_service: VaultService, conns: dict[str, Conn]
) -> None:
    orch = VaultClient(conns["orchestrator"].nc, timeout=2)
    tenant = "tn_" + secrets.token_hex(4)
    info = await orch.create(tenant, "k", "stream_key", Secret("live_1_PermissionTest01"))
    assert [c.id for c in await orch.list(tenant)] == [info.id]
    assert not conns["orchestrator"].errors

    # the output user reaches resolve (refused by the vault for want of a lease, not by the server)
    output = VaultClient(conns["output"].nc, timeout=2)
    with pytest.raises(VaultFailure) as err:
        await output.resolve(tenant, "ev_x", "out_x", info.id, "output-1")
    assert err.value.code == vm.NO_LEASE
    assert not conns["output"].errors
    # ... but may not manage credentials
    await refused(conns["output"], VaultClient(conns["output"].nc, timeout=1).list(tenant))

    # the orchestrator may not resolve
    await refused(conns["orchestrator"], orch.resolve(tenant, "ev_x", "out_x", info.id, "output-1"))
    conns["orchestrator"].errors.clear()
    await refused(conns["orchestrator"], orch.resolve_input(tenant, "ev_x", "in_x", info.id, "orch"))

    # ingest reaches resolve_input (refused by the vault: no input names the credential), and only that
    ingest = VaultClient(conns["ingest"].nc, timeout=2)
    with pytest.raises(VaultFailure) as err:
        await ingest.resolve_input(tenant, "ev_x", "in_x", info.id, "ingest-1")
    assert err.value.code == vm.NOT_REFERENCED
    assert not conns["ingest"].errors
    await refused(
        conns["ingest"],
        VaultClient(conns["ingest"].nc, timeout=1).resolve(tenant, "ev_x", "out_x", info.id, "output-1"),
    )
    conns["output"].errors.clear()
    await refused(
        conns["output"],
        VaultClient(conns["output"].nc, timeout=1).resolve_input(tenant, "ev_x", "in_x", info.id, "o"),
    )

    # the router may call nothing on the vault
    for name in ("ingest", "router"):
        conns[name].errors.clear()
        client = VaultClient(conns[name].nc, timeout=1)
        await refused(conns[name], client.describe(tenant, info.id))
    assert [c.version for c in await orch.list(tenant)] == [1], "nothing changed"


async def test_other_users_cannot_listen_on_the_vault_or_audit_subjects(
    vault_service: VaultService, conns: dict[str, Conn]
) -> None:
    for name in ("ingest", "output", "orchestrator"):
        conn = conns[name]
        await conn.nc.subscribe("fanout.vault.*")
        await conn.nc.flush()
        await async_wait_until(
            lambda c=conn: violated(c, "subscription"), 5, f"{name}'s subscription refused"
        )  # type: ignore[misc]
    for name in ("ingest", "router", "output"):
        conn = conns[name]
        conn.errors.clear()
        await conn.nc.publish("fanout.audit.tn_x.vault", b"{}")
        await conn.nc.flush()
        await async_wait_until(lambda c=conn: violated(c, "publish"), 5, f"{name}'s audit publish refused")  # type: ignore[misc]


async def test_a_wrong_password_is_refused(secured: Secured) -> None:
    with pytest.raises(Exception, match=r"[Aa]uthorization"):
        await asyncio.wait_for(
            nats.connect(
                secured.url("vault", "wrong"),
                max_reconnect_attempts=0,
                connect_timeout=3,
                allow_reconnect=False,
            ),
            10,
        )
