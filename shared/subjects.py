"""Every NATS subject and key-value name used by Fanout is built here and nowhere else.

Layout: ``fanout.<plane>.<tenant>.<event>...``. Tokens are ids made by ``shared.ids`` and never
contain dots, wildcards or whitespace; ``token()`` refuses anything else so a bad id cannot widen a
subscription.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# JetStream key-value buckets.
KV_DESIRED = "fanout_desired"  # key: event.<event_id> -> EventSpec
KV_LEASES = "fanout_leases"  # key: output.<output_id> -> worker id
KV_PROGRAM = "fanout_program"  # key: event.<event_id> -> ProgramMark (where the program timeline is)


def token(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"invalid subject token {value!r}")
    return value


def input_media(tenant: str, event: str, input_id: str) -> str:
    """Packets of one contribution input, published by ingest."""
    return f"fanout.media.{token(tenant)}.{token(event)}.input.{token(input_id)}"


def event_inputs_media(tenant: str, event: str) -> str:
    return f"fanout.media.{token(tenant)}.{token(event)}.input.*"


def program_media(tenant: str, event: str) -> str:
    """The event's continuous program, published by the router."""
    return f"fanout.media.{token(tenant)}.{token(event)}.program"


def rendition_media(tenant: str, event: str, profile: str) -> str:
    """The program encoded with one profile, published by the transcode service while an output needs it."""
    return f"fanout.media.{token(tenant)}.{token(event)}.rendition.{token(profile)}"


def input_health(tenant: str, event: str, input_id: str) -> str:
    return f"fanout.health.{token(tenant)}.{token(event)}.input.{token(input_id)}"


ALL_INPUT_HEALTH = "fanout.health.*.*.input.*"


def output_state(tenant: str, event: str, output_id: str) -> str:
    return f"fanout.state.{token(tenant)}.{token(event)}.output.{token(output_id)}"


ALL_OUTPUT_STATE = "fanout.state.*.*.output.*"


def ingest_session(tenant: str, event: str) -> str:
    """Publish accepted, refused and closed events of contribution sessions."""
    return f"fanout.session.{token(tenant)}.{token(event)}.ingest"


INGEST_REFUSED = "fanout.session.unknown.ingest"
ALL_INGEST_SESSIONS = "fanout.session.*.*.ingest"


def failover_events(tenant: str, event: str) -> str:
    """Every switch of the event's program (FailoverEvent), published by the router."""
    return f"fanout.failover.{token(tenant)}.{token(event)}"


ALL_FAILOVER_EVENTS = "fanout.failover.*.*"


def router_status(tenant: str, event: str) -> str:
    """The router's RouterStatus of one event: live input, mode, recent switches."""
    return f"fanout.state.{token(tenant)}.{token(event)}.router"


ALL_ROUTER_STATUS = "fanout.state.*.*.router"


def router_command(tenant: str, event: str) -> str:
    """Request/reply: RouterCommand to the event's router, answered with a RouterReply."""
    return f"fanout.cmd.{token(tenant)}.{token(event)}.router"


def desired_event_key(event: str) -> str:
    return f"event.{token(event)}"


def program_mark_key(event: str) -> str:
    return f"event.{token(event)}"


def lease_key(output_id: str) -> str:
    return f"output.{token(output_id)}"


def worker_stats(service: str, worker: str) -> str:
    return f"fanout.stats.{token(service)}.{token(worker)}"


ALL_WORKER_STATS = "fanout.stats.*.*"


# --- vault: request/reply, answered by the vault service's queue group ---

VAULT_QUEUE = "vault"
VAULT_OPS = (
    "create", "rotate", "delete", "verify", "describe", "list", "resolve", "resolve_input", "rekey", "transport_key",
)  # fmt: skip
ALL_VAULT_REQUESTS = "fanout.vault.*"


def vault_request(op: str) -> str:
    """Request/reply to the vault: ``resolve`` is for output workers only, ``resolve_input`` for ingest
    only, the rest for the orchestrator (deploy/nats-permissions.conf)."""
    if op not in VAULT_OPS:
        raise ValueError(f"unknown vault operation {op!r}")
    return f"fanout.vault.{op}"


# --- audit: durable (JetStream stream AUDIT_STREAM), every resolve and change of a credential ---

AUDIT_STREAM = "FANOUT_AUDIT"
ALL_AUDIT = "fanout.audit.>"


def vault_audit(tenant: str) -> str:
    return f"fanout.audit.{token(tenant)}.vault"
