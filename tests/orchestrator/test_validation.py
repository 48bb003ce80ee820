"""Bad request bodies: the right status, code and field, and not one row created."""

from __future__ import annotations

from typing import Any

import pytest

from tests.orchestrator.conftest import Api

pytestmark = pytest.mark.timeout(60)

GOOD_URL = "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop"


async def _target(api: Api, kind: str) -> str:
    if kind == "tenants":
        return "/v1/tenants"
    if kind == "events":
        return "/v1/events"
    ev = await api.ok("POST", "/v1/events", {"name": "target"})
    return f"/v1/events/{ev['id']}/{kind}"


# (resource, body or raw bytes, status, code, field)
CASES: list[tuple[str, Any, int, str, str | None]] = [
    ("events", b"{not json", 400, "bad_request", None),
    ("events", b"", 400, "bad_request", None),
    ("events", b'{"name": "x"', 400, "bad_request", None),
    ("events", [1, 2], 422, "validation_error", None),
    ("events", "just a string", 422, "validation_error", None),
    ("events", {}, 422, "validation_error", "name"),
    ("events", {"name": 5}, 422, "validation_error", "name"),
    ("events", {"name": ""}, 422, "validation_error", "name"),
    ("events", {"name": "   "}, 422, "validation_error", "name"),
    ("events", {"name": "a\x00b"}, 422, "validation_error", "name"),
    ("events", {"name": "x" * 201}, 422, "validation_error", "name"),
    ("events", {"name": "x", "tenant_id": "tn_default"}, 422, "validation_error", "tenant_id"),
    ("events", {"name": "x", "state": "live"}, 422, "validation_error", "state"),
    ("events", {"name": "x", "id": "ev_mine"}, 422, "validation_error", "id"),
    ("tenants", {}, 422, "validation_error", "name"),
    ("tenants", {"name": ["a"]}, 422, "validation_error", "name"),
    ("tenants", {"name": "t", "admin": True}, 422, "validation_error", "admin"),
    ("inputs", {}, 422, "validation_error", "role"),
    ("inputs", {"role": "tertiary", "protocol": "rtmp"}, 422, "validation_error", "role"),
    ("inputs", {"role": "primary", "protocol": "webrtc"}, 422, "validation_error", "protocol"),
    ("inputs", {"role": "primary", "protocol": "rtmp", "passphrase": "0123456789ab"}, 422, "validation_error", "passphrase"),
    ("inputs", {"role": "primary", "latency_ms": 200}, 422, "validation_error", "latency_ms"),
    ("inputs", {"role": "primary", "protocol": "srt", "passphrase": "short"}, 422, "validation_error", "passphrase"),
    ("inputs", {"role": "primary", "protocol": "srt", "passphrase": "p" * 80}, 422, "validation_error", "passphrase"),
    ("inputs", {"role": "primary", "protocol": "srt", "passphrase": "caf\u00e9-passphrase"}, 422, "validation_error", "passphrase"),
    ("inputs", {"role": "primary", "protocol": "srt", "passphrase": "0123456789ab", "pbkeylen": 20}, 422, "validation_error", "pbkeylen"),
    ("inputs", {"role": "primary", "protocol": "srt", "pbkeylen": 32}, 422, "validation_error", "pbkeylen"),
    ("inputs", {"role": "primary", "protocol": "srt", "latency_ms": 5}, 422, "validation_error", "latency_ms"),
    ("inputs", {"role": "primary", "protocol": "srt", "latency_ms": "120"}, 422, "validation_error", "latency_ms"),
    ("inputs", {"role": 1}, 422, "validation_error", "role"),
    ("inputs", {"role": "primary", "tenant_id": "tn_x"}, 422, "validation_error", "tenant_id"),
    ("inputs", {"role": "primary", "stream_key": "mine"}, 422, "validation_error", "stream_key"),
    ("outputs", {"url": GOOD_URL}, 422, "validation_error", "name"),
    ("outputs", {"name": "yt"}, 422, "validation_error", "url"),
    ("outputs", {"name": "yt", "url": GOOD_URL, "class": "D"}, 422, "validation_error", "class"),
    ("outputs", {"name": "yt", "url": GOOD_URL, "class": 1}, 422, "validation_error", "class"),
    ("outputs", {"name": "yt", "url": GOOD_URL, "enabled": False}, 422, "validation_error", "enabled"),
    ("outputs", {"name": "yt", "url": 42}, 422, "validation_error", "url"),
    ("outputs", {"name": "yt", "url": None}, 422, "validation_error", "url"),
    ("outputs", {"name": "yt", "url": ""}, 422, "validation_error", "url"),
    ("outputs", {"name": "yt", "url": "http://example.com/live/key"}, 422, "validation_error", "url"),
    ("outputs", {"name": "yt", "url": "rtmp://example.com/live"}, 422, "validation_error", "url"),
    ("outputs", {"name": "yt", "url": "rtmp://example.com:99999/live/key"}, 422, "validation_error", "url"),
    ("outputs", {"name": "yt", "url": "rtmp:///live/key"}, 422, "validation_error", "url"),
    ("outputs", {"name": "yt", "url": "rtmp://example.com/live/my key"}, 422, "validation_error", "url"),
    ("outputs", {"name": "yt", "url": "rtmp://u:p@example.com/live/key"}, 422, "validation_error", "url"),
    ("outputs", {"name": "yt", "url": "rtmp://example.com/live/" + "k" * 3000}, 422, "validation_error", "url"),
    ("outputs", {"name": "yt", "url": "not a url at all"}, 422, "validation_error", "url"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "body", "status", "code", "field"), CASES)
async def test_bad_bodies_are_refused_and_create_nothing(
    api: Api, kind: str, body: Any, status: int, code: str, field: str | None
) -> None:
    path = await _target(api, kind)
    before = api.counts()
    if isinstance(body, bytes):
        reply = await api.call("POST", path, raw=body)
    else:
        reply = await api.call("POST", path, body)
    assert reply.status == status, reply.body
    error = reply.error
    assert error["code"] == code
    assert error.get("field") == field
    assert error["message"]
    if field:
        assert field in error["message"], "the message names the field"
    assert api.counts() == before


async def test_a_malformed_url_is_never_echoed_back(api: Api) -> None:
    path = await _target(api, "outputs")
    secret = "SecretKey-0123456789"
    reply = await api.call("POST", path, {"name": "x", "url": f"rtmp://example.com:99999/live/{secret}"})
    assert reply.status == 422
    assert secret not in str(reply.body)


async def test_unknown_event_for_a_new_input_or_output_is_404_and_creates_nothing(api: Api) -> None:
    before = api.counts()
    for kind, body in (("inputs", {"role": "primary"}), ("outputs", {"name": "x", "url": GOOD_URL})):
        reply = await api.call("POST", f"/v1/events/ev_0000000000000000/{kind}", body)
        assert reply.status == 404 and reply.error["code"] == "not_found"
    assert api.counts() == before


async def test_second_input_of_a_role_is_a_conflict_and_creates_nothing(api: Api) -> None:
    ev = await api.ok("POST", "/v1/events", {"name": "e"})
    await api.ok("POST", f"/v1/events/{ev['id']}/inputs", {"role": "primary", "protocol": "rtmp"})
    before = api.counts()
    reply = await api.call("POST", f"/v1/events/{ev['id']}/inputs", {"role": "primary", "protocol": "rtmp"})
    assert reply.status == 409 and reply.error["code"] == "conflict"
    assert api.counts() == before
    await api.ok("POST", f"/v1/events/{ev['id']}/inputs", {"role": "backup"})  # protocol defaults to rtmp


async def test_duplicate_tenant_name_is_a_conflict(api: Api) -> None:
    await api.ok("POST", "/v1/tenants", {"name": "acme"})
    before = api.counts()
    reply = await api.call("POST", "/v1/tenants", {"name": "acme"})
    assert reply.status == 409 and reply.error["code"] == "conflict"
    assert api.counts() == before


async def test_key_creation_refuses_a_body_with_fields(api: Api) -> None:
    tenant = await api.ok("POST", "/v1/tenants", {"name": "k"})
    before = api.counts()
    reply = await api.call("POST", f"/v1/tenants/{tenant['id']}/keys", {"is_admin": True})
    assert reply.status == 422 and reply.error["field"] == "is_admin"
    assert api.counts() == before
    assert (await api.call("POST", f"/v1/tenants/{tenant['id']}/keys", {})).status == 201


async def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    reply = await api.call("GET", "/v1/nothing-here")
    assert reply.status == 404 and reply.error["code"] == "not_found"
    reply = await api.call("PUT", "/v1/events", {"name": "x"})
    assert reply.status == 405 and reply.error["code"] == "method_not_allowed"
    assert "POST" in reply.headers["Allow"]
    reply = await api.call("GET", "/not-api", key=None)
    assert reply.status == 404 and reply.error["code"] == "not_found"


async def test_oversized_body_answers_json(api: Api) -> None:
    reply = await api.call("POST", "/v1/events", raw=b'{"name": "' + b"x" * 400_000 + b'"}')
    assert reply.status == 413 and reply.error["code"] == "payload_too_large"
