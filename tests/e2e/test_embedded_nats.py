"""The one-machine stack's embedded NATS runs the production permissions: one user per service.

A local process that finds the port gets nothing without a password, and a service's user reaches only
what its service needs (the full rules are tested in tests/vault/test_nats_permissions.py)."""

from __future__ import annotations

import asyncio
import json
import stat

import nats
import pytest

from shared import subjects
from shared.secret import Secret
from shared.vault_client import VaultClient, VaultUnavailable
from tests.peers.procs import async_wait_until
from tests.peers.stack import Stack

pytestmark = pytest.mark.e2e


async def _connect(url: str, errors: list[str]) -> nats.aio.client.Client:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(url, error_cb=on_error, max_reconnect_attempts=0, allow_reconnect=False)


def test_each_service_has_its_own_user_and_strangers_get_nothing(stack: Stack) -> None:
    users_file, url_file = stack.data_dir / "nats-users.json", stack.data_dir / "nats.url"
    for path in (users_file, url_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path.name} is readable by others"
    passwords = json.loads(users_file.read_text())
    assert set(passwords) == {"orchestrator", "vault", "output", "transcode", "ingest", "router", "operator"}
    operator = url_file.read_text().strip()
    port = operator.rsplit(":", 1)[1]
    text = stack.log_text()
    for password in passwords.values():
        assert password not in text, "a NATS password reached the logs"

    async def probe() -> None:
        with pytest.raises(Exception, match=r"[Aa]uthorization"):
            await asyncio.wait_for(_connect(f"nats://127.0.0.1:{port}", []), 10)
        errors: list[str] = []
        ingest = await _connect(f"nats://ingest:{passwords['ingest']}@127.0.0.1:{port}", errors)
        try:
            await ingest.subscribe(subjects.program_media("tn_default", "ev_x"))
            await ingest.flush()
            await async_wait_until(lambda: any("subscription" in e.lower() for e in errors), 5, "refusal")
            with pytest.raises(VaultUnavailable):  # no answer: the server refused the request
                await VaultClient(ingest, timeout=1).create("tn_default", "x", "stream_key", Secret("k" * 20))
        finally:
            await ingest.close()
        tools = await _connect(operator, [])  # tools on this machine: every right
        try:
            assert await VaultClient(tools, timeout=5).list("tn_default") == []
        finally:
            await tools.close()

    asyncio.run(probe())
    stack.ok("GET", "/v1/events")  # the services, each as its own user, are serving
