"""The OpenAPI document lists every route with its security, and every reference resolves."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from services.orchestrator.api import API
from tests.orchestrator.conftest import Api

pytestmark = pytest.mark.timeout(60)


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


async def test_openapi_document_lists_every_route(api: Api) -> None:
    reply = await api.call("GET", "/v1/openapi.json", key=None)
    assert reply.status == 200 and reply.headers["Content-Type"].startswith("application/json")
    doc = reply.body
    json.dumps(doc)
    assert doc["openapi"].startswith("3.0.") and doc["info"]["title"] and doc["info"]["version"]
    schemes = doc["components"]["securitySchemes"]
    assert all(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())

    routes = api.orchestrator.app[API].routes
    aio_routes = {
        (r.method, r.resource.canonical)
        for r in api.orchestrator.app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    assert aio_routes == {(r.method, r.path) for r in routes}
    for route in routes:
        op = doc["paths"][route.path][route.method.lower()]
        expected: list[Any] = {"public": [], "tenant": [{"apiKey": []}], "admin": [{"adminKey": []}]}[
            route.access
        ]
        assert op["security"] == expected, route.path
        assert op["summary"] and op["operationId"]
        assert str(route.status) in op["responses"]
        params = set(re.findall(r"\{(\w+)\}", route.path))
        assert {p["name"] for p in op.get("parameters", [])} == params
        if route.access != "public":
            assert "401" in op["responses"]
        if route.body is not None:
            assert {"400", "422"} <= set(op["responses"])
    assert sum(len(ops) for ops in doc["paths"].values()) == len(routes)

    schemas = doc["components"]["schemas"]
    for node in _walk(doc):
        ref = node.get("$ref")
        if ref is not None:
            assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
        # OpenAPI 3.0 has no JSON Schema 2020-12 constructs
        assert node.get("type") != "null" and "const" not in node and "$defs" not in node
        assert node.get("required", ["x"]) != []
    assert schemas["OutputCreate"]["properties"]["class"]["enum"] == ["A", "B", "C"]
    assert schemas["InputCreate"]["required"] == ["role"]
    assert schemas["ErrorDetail"]["properties"]["field"]["nullable"] is True
    event_view = schemas["EventView"]["properties"]
    assert {"inputs", "outputs", "state"} <= set(event_view)
