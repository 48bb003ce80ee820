"""Stream-key directory: which tenant, event and input a presented stream key publishes to.

Desired state carries only the sha256 of each key, so ingest never holds the keys themselves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from shared.messages import EventSpec


@dataclass(frozen=True)
class Route:
    tenant_id: str
    event_id: str
    input_id: str
    role: str
    protocol: str
    # SRT: the connection's receive latency and passphrase, set during its handshake: the vault
    # credential's (``credential_id``, resolved ahead by InputSecrets), or one from desired state
    # written before the vault held input passphrases (never logged either way)
    passphrase: str = field(default="", repr=False)
    latency_ms: int = 120
    credential_id: str = ""
    credential_version: int = 0


def key_hash(stream_key: str) -> str:
    return hashlib.sha256(stream_key.encode("utf-8", "surrogatepass")).hexdigest()


def stream_key_from_name(stream_name: str) -> str:
    """RTMP stream names may carry a query (``KEY?token=x``); the key is the part before it."""
    return stream_name.split("?", 1)[0].strip()


class KeyDirectory:
    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._by_event: dict[str, set[str]] = {}

    def update(self, event_id: str, spec: EventSpec | None) -> None:
        for h in self._by_event.pop(event_id, set()):
            self._routes.pop(h, None)
        if spec is None or spec.state == "stopped":
            return
        hashes = set()
        for item in spec.inputs:
            self._routes[item.key_hash] = Route(
                spec.tenant_id, spec.id, item.id, item.role, item.protocol, item.passphrase, item.latency_ms,
                item.credential_id, item.credential_version,
            )  # fmt: skip
            hashes.add(item.key_hash)
        self._by_event[event_id] = hashes

    def lookup(self, stream_key: str, protocol: str) -> Route | None:
        if not stream_key:
            return None
        route = self._routes.get(key_hash(stream_key))
        if route is None or route.protocol != protocol:
            return None
        return route

    def is_current(self, route: Route) -> bool:
        return any(r == route for r in self._routes.values() if r.input_id == route.input_id)
