"""Master key rotation: rewrap every secret under the active version, then retire older versions.

``to_retire`` is the pure decision (which versions go, and whether any still protects a secret);
``rewrap_all`` walks the credentials with optimistic concurrency: a rotation that lands meanwhile
wins, and what it wrote is rewrapped in turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from sqlalchemy.engine import Engine

from . import envelope, store


class StillInUse(Exception):
    pass


def to_retire(
    keyring: envelope.Keyring,
    requested: set[int],
    retire_previous: bool,
    in_use: Mapping[int, int],
    force: bool,
) -> set[int]:
    """The versions to retire: those asked for (every older one with ``retire_previous``), never the
    active one. Raises StillInUse when one still protects a secret, unless ``force``."""
    retire = set(requested)
    if retire_previous:
        retire |= {v for v in keyring.versions if v < keyring.active}
    retire.discard(keyring.active)
    blocked = sorted(v for v in retire if in_use.get(v))
    if blocked and not force:
        raise StillInUse(
            f"master key version(s) {', '.join(map(str, blocked))} still protect "
            f"{sum(in_use[v] for v in blocked)} secret(s) that could not be rewrapped; "
            "fix or delete them first (or force)"
        )
    return retire


OnFailure = Callable[[str, str, envelope.EnvelopeError], Awaitable[None]]


async def rewrap_all(
    engine: Engine, keyring: envelope.Keyring, on_failure: OnFailure
) -> tuple[int, list[str]]:
    """Rewrap every secret not yet under the active version; (how many were, ids that could not be)."""
    rewrapped, failed = 0, []
    for tenant_id, credential_id in await asyncio.to_thread(store.all_ids, engine):
        for _ in range(5):  # a concurrent rotate wins; rewrap what it wrote
            try:
                row = await asyncio.to_thread(store.get, engine, tenant_id, credential_id)
            except store.NotFound:
                break
            current = row.sealed
            try:
                sealed = envelope.rewrap(keyring, tenant_id, credential_id, current)
            except envelope.EnvelopeError as exc:
                failed.append(credential_id)
                await on_failure(tenant_id, credential_id, exc)
                break
            if sealed is current:
                break
            try:
                await asyncio.to_thread(
                    store.update,
                    engine,
                    row,
                    master_version=sealed.master_version,
                    wrapped_key=sealed.wrapped_key,
                )
            except store.Conflict:
                continue
            except store.NotFound:
                break
            rewrapped += 1
            break
    return rewrapped, failed
