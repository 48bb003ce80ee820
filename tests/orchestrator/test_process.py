"""The orchestrator as a real process: restarts keep and republish desired state, SIGTERM exits 0 promptly,
the admin key is generated and shown once or taken from FANOUT_ADMIN_KEY."""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from shared import bus, messages, subjects
from tests.orchestrator.process import OrchestratorProcess, start_orchestrator
from tests.peers.nats_server import NatsServer

pytestmark = pytest.mark.timeout(120)

YT = "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop"
ADMIN_LINE = re.compile(r"^Admin API key \(shown once, store it\): (\S+)$", re.MULTILINE)


def desired_specs(nats_url: str) -> dict[str, messages.EventSpec]:
    async def read() -> dict[str, messages.EventSpec]:
        nc = await bus.connect(nats_url, "test-reader")
        try:
            kv = await bus.desired_bucket(nc)
            try:
                keys = await kv.keys()
            except Exception:  # NoKeysError: an empty bucket
                return {}
            out = {}
            for key in keys:
                entry = await kv.get(key)
                if entry.value:
                    out[key] = messages.decode(entry.value, messages.EventSpec)
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def delete_desired_bucket(nats_url: str) -> None:
    async def delete() -> None:
        nc = await bus.connect(nats_url, "test-deleter")
        try:
            await nc.jetstream().delete_key_value(subjects.KV_DESIRED)
        finally:
            await nc.close()

    asyncio.run(delete())


def stop_and_check(orch: OrchestratorProcess) -> float:
    started = time.monotonic()
    code = orch.stop(timeout=15)
    elapsed = time.monotonic() - started
    assert code == 0, f"exit {code}:\n{orch.log_text()[-3000:]}"
    return elapsed


def test_restart_keeps_everything_and_rebuilds_a_deleted_bucket(
    tmp_path: Path, nats_server: NatsServer, database_url: str | None
) -> None:
    admin = "admin-" + secrets.token_hex(16)
    orch = start_orchestrator(tmp_path, nats_server.url, database_url, admin)
    try:
        tenant = orch.ok("POST", "/v1/tenants", {"name": "acme"})
        key = orch.ok("POST", f"/v1/tenants/{tenant['id']}/keys")["key"]
        ev = orch.ok("POST", "/v1/events", {"name": "show"}, key)
        inp = orch.ok("POST", f"/v1/events/{ev['id']}/inputs", {"role": "primary", "protocol": "rtmp"}, key)
        out = orch.ok("POST", f"/v1/events/{ev['id']}/outputs", {"name": "yt", "url": YT}, key)
        off = orch.ok("POST", f"/v1/events/{ev['id']}/outputs", {"name": "off", "url": YT, "class": "C"}, key)
        orch.ok("POST", f"/v1/outputs/{off['id']}/stop", key=key)
        orch.ok("POST", f"/v1/events/{ev['id']}/start", key=key)
        before = orch.ok("GET", f"/v1/events/{ev['id']}", key=key)
        spec_key = subjects.desired_event_key(ev["id"])
        spec_before = desired_specs(nats_server.url)[spec_key]
        assert spec_before.state == "live" and [o.enabled for o in spec_before.outputs] == [True, False]
    finally:
        stop_and_check(orch)

    delete_desired_bucket(nats_server.url)
    assert desired_specs(nats_server.url) == {}

    orch = start_orchestrator(tmp_path, nats_server.url, database_url, admin)
    try:
        assert orch.ok("GET", f"/v1/events/{ev['id']}", key=key) == before
        assert (
            orch.ok("GET", f"/v1/inputs/{inp['id']}", key=key)["stream_key_hint"]
            == "…" + inp["stream_key"][-4:]
        )
        assert orch.ok("GET", f"/v1/outputs/{out['id']}", key=key)["enabled"] is True
        assert desired_specs(nats_server.url)[spec_key] == spec_before
        assert [t["name"] for t in orch.ok("GET", "/v1/tenants")["tenants"]] == ["default", "acme"]
        assert "db.migrated" not in orch.log_text(), "the second start has no migration to run"
    finally:
        stop_and_check(orch)


def test_sigterm_exits_zero_promptly_even_with_an_open_connection(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    orch = start_orchestrator(tmp_path, nats_server.url, admin_key="admin-" + secrets.token_hex(16))
    conn = http.client.HTTPConnection("127.0.0.1", orch.http_port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() == b'{"ok":true}'  # keep-alive connection stays open
        started = time.monotonic()
        os.killpg(orch.proc.pid, signal.SIGTERM)
        code = orch.proc.wait(10)
        elapsed = time.monotonic() - started
    finally:
        conn.close()
        orch.stop()
    assert code == 0, orch.log_text()[-3000:]
    assert elapsed < 5, f"took {elapsed:.1f}s to stop"
    assert '"service.stopped"' in orch.log_text() or "service.stopped" in orch.log_text()


def test_generated_admin_key_is_shown_once_and_never_logged(tmp_path: Path, nats_server: NatsServer) -> None:
    orch = start_orchestrator(tmp_path, nats_server.url)
    try:
        shown = ADMIN_LINE.findall(orch.stdout_text())
        assert len(shown) == 1, orch.stdout_text()
        generated = shown[0]
        assert orch.call("GET", "/v1/tenants", key=generated)[0] == 200
        assert orch.call("GET", "/v1/tenants", key="fo_not-the-key")[0] == 401
        orch.ok("POST", "/v1/events", {"name": "x"}, generated)
    finally:
        stop_and_check(orch)
    assert generated not in orch.log_text()

    orch = start_orchestrator(tmp_path, nats_server.url)
    try:
        assert ADMIN_LINE.findall(orch.stdout_text()) == [], "shown once only"
        assert orch.call("GET", "/v1/tenants", key=generated)[0] == 200
    finally:
        stop_and_check(orch)

    # FANOUT_ADMIN_KEY is authoritative: it replaces the generated key
    configured = "configured-" + secrets.token_hex(16)
    orch = start_orchestrator(tmp_path, nats_server.url, admin_key=configured)
    try:
        assert orch.call("GET", "/v1/tenants", key=generated)[0] == 401
        assert orch.call("GET", "/v1/tenants", key=configured)[0] == 200
        assert ADMIN_LINE.findall(orch.stdout_text()) == []
    finally:
        stop_and_check(orch)
    for path in tmp_path.glob("orchestrator*.std*"):
        text = path.read_text(errors="replace")
        assert configured not in text
        if path.suffix == ".stderr":
            assert generated not in text


def test_errors_are_json_over_the_wire(tmp_path: Path, nats_server: NatsServer) -> None:
    orch = start_orchestrator(tmp_path, nats_server.url, admin_key="admin-" + secrets.token_hex(16))
    try:
        checks: list[tuple[str, str, Any, str | None, int]] = [
            ("GET", "/v1/events", None, "nope", 401),
            ("POST", "/v1/events", b"{oops", None, 400),
            ("POST", "/v1/events", {"name": 1}, None, 422),
            ("GET", "/v1/events/ev_0000000000000000", None, None, 404),
            ("PATCH", "/v1/events", None, None, 405),
        ]
        for method, path, body, key, status in checks:
            got, reply = orch.call(method, path, body, key)
            assert got == status and isinstance(reply, dict) and reply["error"]["code"], (method, path, reply)
    finally:
        stop_and_check(orch)
