"""The OpenAPI 3.0 document, built from the route table and the msgspec DTOs.

msgspec writes JSON Schema 2020-12 (OpenAPI 3.1's dialect); ``_to_30`` rewrites the few constructs
OpenAPI 3.0 spells differently (``anyOf`` with null -> ``nullable``, ``const`` -> ``enum``, typeless
enums, empty ``required``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from .views import ErrorResponse

if TYPE_CHECKING:
    from .api import Route

_REF = "#/components/schemas/{name}"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "public": [],
    "tenant": [{"apiKey": []}],
    "admin": [{"adminKey": []}],
}
_ERROR_TEXT = {
    400: "Malformed JSON",
    401: "Missing or unknown API key",
    403: "The route needs the admin key",
    404: "Not found (or owned by another tenant)",
    409: "Conflicts with the current state",
    422: "The body does not validate; `field` names the culprit",
    503: "Saved, but desired state could not be published yet (retried in the background)",
}


def _to_30(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _to_30(value) for key, value in node.items()}
    variants = node.get("anyOf")
    if isinstance(variants, list) and {"type": "null"} in variants:
        rest = [v for v in variants if v != {"type": "null"}]
        if len(rest) == 1:
            del node["anyOf"]
            base = rest[0] if "$ref" not in rest[0] else {"allOf": [rest[0]]}
            node = {**base, **node, "nullable": True}
        else:
            node["anyOf"] = rest
            node["nullable"] = True
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node and "type" not in node:
        values = node["enum"]
        if all(isinstance(v, str) for v in values):
            node["type"] = "string"
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            node["type"] = "integer"
    if node.get("required") == []:
        del node["required"]
    return node


def _ref(kind: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=kind.__name__)}


def _json(schema: dict[str, str], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.handler.__name__,
        "summary": route.summary,
        "security": _SECURITY[route.access],
    }
    params = _PARAM.findall(route.path)
    if params:
        op["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params
        ]
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(route.body)}}}
    responses: dict[str, Any] = {}
    if route.response is not None:
        responses[str(route.status)] = _json(_ref(route.response), "Success")
    elif route.status == 204:
        responses["204"] = {"description": "Done, no content"}
    else:
        responses[str(route.status)] = _json({"type": "object"}, "Success")
    codes = set(route.errors)
    if route.access != "public":
        codes.add(401)
    if route.access == "admin":
        codes.add(403)
    if route.body is not None:
        codes |= {400, 422}
    for code in sorted(codes):
        responses[str(code)] = _json(_ref(ErrorResponse), _ERROR_TEXT.get(code, "Error"))
    op["responses"] = responses
    return op


def document(routes: Sequence[Route]) -> dict[str, Any]:
    types: list[type] = [ErrorResponse]
    for route in routes:
        types += [t for t in (route.body, route.response) if t is not None and t not in types]
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Fanout orchestrator API",
            "version": "1",
            "description": "Tenants, API keys, events, inputs and outputs: the desired state of a Fanout stack. "
            'Errors are always JSON: {"error": {"code", "message", "field"}}.',
        },
        "paths": paths,
        "components": {
            "schemas": _to_30(components),
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A tenant's API key (or the admin key)",
                },
                "adminKey": {"type": "http", "scheme": "bearer", "description": "The admin API key"},
            },
        },
    }
