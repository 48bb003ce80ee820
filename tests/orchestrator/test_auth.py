"""API keys and tenants: 401 without a key, 403 on admin routes, 404 across tenants, keys stored hashed."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from services.orchestrator import db
from services.orchestrator.api import API
from services.vault import store as vault_store
from shared import bus, subjects
from tests.orchestrator.conftest import TABLES, Api

pytestmark = pytest.mark.timeout(60)

OUTPUT_BODY = {"name": "yt", "url": "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop"}

# Every route that takes the id of a tenant's resource, with a body that would succeed for its owner
# (string values in a body are templates too: "{input_id}" is the owner's input).
ID_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/events/{event_id}", None),
    ("PATCH", "/v1/events/{event_id}", {"name": "renamed", "failover": {"loss_timeout_ms": 1000}}),
    ("POST", "/v1/events/{event_id}/switch", {"input_id": "{input_id}"}),
    ("POST", "/v1/events/{event_id}/lock", {"input_id": "{input_id}"}),
    ("POST", "/v1/events/{event_id}/unlock", None),
    ("POST", "/v1/events/{event_id}/rollback", {"min_priority": 2}),
    ("DELETE", "/v1/events/{event_id}/rollback", None),
    ("DELETE", "/v1/events/{event_id}", None),
    ("POST", "/v1/events/{event_id}/start", None),
    ("POST", "/v1/events/{event_id}/stop", None),
    ("POST", "/v1/events/{event_id}/inputs", {"role": "backup", "protocol": "rtmp"}),
    ("POST", "/v1/events/{event_id}/outputs", OUTPUT_BODY),
    ("GET", "/v1/inputs/{input_id}", None),
    ("DELETE", "/v1/inputs/{input_id}", None),
    ("GET", "/v1/outputs/{output_id}", None),
    ("DELETE", "/v1/outputs/{output_id}", None),
    ("POST", "/v1/outputs/{output_id}/start", None),
    ("POST", "/v1/outputs/{output_id}/stop", None),
    ("PATCH", "/v1/outputs/{output_id}", {"profile": "social-720p30"}),
    ("GET", "/v1/credentials/{credential_id}", None),
    ("POST", "/v1/credentials/{credential_id}/rotate", {"value": "live_77_RotatedByOwner0001"}),
    ("POST", "/v1/credentials/{credential_id}/verify", None),
    ("DELETE", "/v1/credentials/{credential_id}", None),
]
ADMIN_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/tenants", None),
    ("POST", "/v1/tenants", {"name": "sneaky"}),
    ("POST", "/v1/tenants/{tenant_id}/keys", None),
    ("POST", "/v1/vault/rekey", {"add_version": False}),
]


def snapshot(api: Api) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the orchestrator's tables and of the vault's (which share the database here)."""
    tables = [db.metadata.tables[t] for t in TABLES] + [vault_store.credentials]
    with api.orchestrator.engine.connect() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(sa.select(t))) for t in tables}


async def kv_revision(api: Api, event_id: str) -> int:
    kv = await bus.desired_bucket(api.nc)
    return (await kv.get(subjects.desired_event_key(event_id))).revision or 0


def test_the_tables_cover_every_route_of_the_app(api: Api) -> None:
    table = {(m, p) for m, p, _ in ID_ROUTES + ADMIN_ROUTES}
    app_routes = api.orchestrator.app[API].routes
    with_ids = {(r.method, r.path) for r in app_routes if "{" in r.path}
    admin = {(r.method, r.path) for r in app_routes if r.access == "admin"}
    assert with_ids | admin == table


@pytest.mark.parametrize("attacker", ["other_tenant", "admin"])
@pytest.mark.parametrize(("method", "template", "body"), ID_ROUTES, ids=[f"{m} {p}" for m, p, _ in ID_ROUTES])
async def test_another_tenants_ids_are_not_found_and_nothing_changes(
    api: Api, attacker: str, method: str, template: str, body: Any
) -> None:
    owner = await api.new_tenant_key("owner")
    other = await api.new_tenant_key("other") if attacker == "other_tenant" else "admin"
    ids = await api.event_with_everything(owner)
    path = template.format(**ids)
    if isinstance(body, dict):
        body = {k: v.format(**ids) if isinstance(v, str) else v for k, v in body.items()}
    unknown = re.sub(r"\{(\w+)\}", lambda m: m.group(1)[:2] + "_0123456789abcdef", template)
    truly_unknown = await api.call(method, unknown, body, key=other)
    before, rev_before = snapshot(api), await kv_revision(api, ids["event_id"])

    reply = await api.call(method, path, body, key=other)

    assert reply.status == 404, reply.body
    assert reply.body == truly_unknown.body, "another tenant's id must look exactly like an unknown one"
    assert snapshot(api) == before
    assert await kv_revision(api, ids["event_id"]) == rev_before
    owner_reply = await api.call(method, path, body, key=owner)
    assert owner_reply.status < 500 and owner_reply.status != 404, owner_reply.body


async def test_lists_show_only_the_callers_tenant(api: Api) -> None:
    a, b = await api.new_tenant_key("a"), await api.new_tenant_key("b")
    ev_a = await api.ok("POST", "/v1/events", {"name": "a"}, a)
    ev_b = await api.ok("POST", "/v1/events", {"name": "b"}, b)
    ev_admin = await api.ok("POST", "/v1/events", {"name": "admin's"})
    assert [e["id"] for e in (await api.ok("GET", "/v1/events", key=a))["events"]] == [ev_a["id"]]
    assert [e["id"] for e in (await api.ok("GET", "/v1/events", key=b))["events"]] == [ev_b["id"]]
    assert [e["id"] for e in (await api.ok("GET", "/v1/events"))["events"]] == [ev_admin["id"]]


@pytest.mark.parametrize(
    ("method", "template", "body"), ADMIN_ROUTES, ids=[f"{m} {p}" for m, p, _ in ADMIN_ROUTES]
)
async def test_admin_routes_are_forbidden_to_tenant_keys(
    api: Api, method: str, template: str, body: Any
) -> None:
    key = await api.new_tenant_key()
    tenants = (await api.ok("GET", "/v1/tenants"))["tenants"]
    mine = next(t for t in tenants if t["name"] != "default")
    before = snapshot(api)
    reply = await api.call(method, template.format(tenant_id=mine["id"]), body, key=key)
    assert reply.status == 403 and reply.error["code"] == "forbidden"
    assert snapshot(api) == before


async def test_admin_creates_tenants_and_keys_and_lists_tenants(api: Api) -> None:
    created = await api.call("POST", "/v1/tenants", {"name": "agency"})
    assert created.status == 201 and set(created.body) == {"id", "name", "created_at"}
    assert created.body["id"].startswith("tn_") and created.body["name"] == "agency"
    key = await api.call("POST", f"/v1/tenants/{created.body['id']}/keys")
    assert key.status == 201 and key.body["tenant_id"] == created.body["id"] and key.body["key"]
    names = [t["name"] for t in (await api.ok("GET", "/v1/tenants"))["tenants"]]
    assert names == ["default", "agency"]
    assert (await api.call("POST", "/v1/tenants/tn_0000000000000000/keys")).status == 404
    # the new key works, for its own tenant
    ev = await api.ok("POST", "/v1/events", {"name": "x"}, key.body["key"])
    assert (await api.call("GET", f"/v1/events/{ev['id']}")).status == 404


ALL_PROTECTED = [(m, p, b) for m, p, b in ID_ROUTES + ADMIN_ROUTES] + [
    ("GET", "/v1/events", None),
    ("POST", "/v1/events", {"name": "x"}),
    ("GET", "/v1/whatever", None),
]


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-key", "Bearer ", "Basic dXNlcjpwYXNz", "bearer", "Token abc"]
)
async def test_missing_or_wrong_key_is_401_with_a_bearer_challenge(
    api: Api, authorization: str | None
) -> None:
    ids = await api.event_with_everything()
    before = snapshot(api)
    for method, template, body in ALL_PROTECTED:
        path = template.format(**ids, tenant_id=db.DEFAULT_TENANT_ID)
        headers = {} if authorization is None else {"Authorization": authorization}
        reply = await api.call(method, path, body, key=None, headers=headers)
        assert reply.status == 401, (method, path, reply.body)
        assert reply.error["code"] == "unauthorized"
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert snapshot(api) == before


async def test_public_routes_need_no_key(api: Api) -> None:
    assert (await api.call("GET", "/healthz", key=None)).body == {"ok": True}
    assert (await api.call("GET", "/v1/openapi.json", key=None)).status == 200


def _database_text(api: Api, data_dir: Path) -> str:
    rows = snapshot(api)
    text = repr(rows)
    if api.settings.database_url is None:  # SQLite: the raw bytes of the file and its WAL too
        for path in sorted(data_dir.glob("fanout.db*")):
            text += path.read_bytes().decode("latin-1")
    return text


async def test_keys_are_stored_hashed_and_never_logged(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tenant_key = await api.new_tenant_key()
    ids = await api.event_with_everything(tenant_key)
    await api.ok("POST", f"/v1/events/{ids['event_id']}/start", key=tenant_key)
    stored = _database_text(api, api.settings.data_dir)
    for secret in (api.admin_key, tenant_key, ids["stream_key"]):
        assert secret not in stored
        assert hashlib.sha256(secret.encode()).hexdigest() in stored
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (api.admin_key, tenant_key, ids["stream_key"], "abcd-efgh-ijkl-mnop"):
        assert secret not in logged


async def test_stream_key_is_shown_once(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "e"})
    created = await api.ok("POST", f"/v1/events/{ev['id']}/inputs", {"role": "primary", "protocol": "rtmp"})
    key = created["stream_key"]
    assert created["publish_url"] == f"rtmp://media.example.com:1935/live/{key}"
    assert created["stream_key_hint"] == "…" + key[-4:]
    later = [
        await api.ok("GET", f"/v1/events/{ev['id']}"),
        await api.ok("GET", f"/v1/inputs/{created['id']}"),
    ]
    for body in later:
        assert key not in str(body)
    got = later[1]
    assert "stream_key" not in got
    assert got["stream_key_hint"] == "…" + key[-4:]
    assert got["publish_url"] == f"rtmp://media.example.com:1935/live/****{key[-4:]}"
