"""SRT input passphrases, resolved from the vault before any caller needs them.

libsrt asks for a caller's passphrase inside its listen callback, synchronously and on its own thread,
where nothing can wait for the vault. So ingest resolves the passphrase of every SRT input desired state
names (again when its credential is rotated: the version changes), holds it in memory as a ``Secret``,
and forgets it when the input goes. A caller whose input's passphrase is not held yet is refused: an
encrypted input never takes a caller without its encryption. Resolving retries, backing off up to a
minute while the vault is away or refuses, and at once when desired state changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from shared.messages import EventSpec
from shared.secret import Secret
from shared.vault_client import VaultClient, VaultFailure, VaultUnavailable

log = logging.getLogger(__name__)

RETRY_S = 2.0
RETRY_MAX_S = 60.0


@dataclass(frozen=True)
class Wanted:
    tenant_id: str
    event_id: str
    credential_id: str
    version: int


class InputSecrets:
    def __init__(self, vault: VaultClient, worker: str, retry_s: float = RETRY_S) -> None:
        self._vault = vault
        self._worker = worker
        self._retry_s = retry_s
        self._wanted: dict[str, Wanted] = {}  # by input id
        self._held: dict[str, tuple[Wanted, Secret]] = {}
        self._by_event: dict[str, set[str]] = {}
        self._changed = asyncio.Event()

    def update(self, event_id: str, spec: EventSpec | None) -> None:
        """Desired state changed for ``event_id``: resolve what is new, forget what went."""
        for input_id in self._by_event.pop(event_id, set()):
            self._wanted.pop(input_id, None)
        ids = set()
        if spec is not None:
            for item in spec.inputs:
                if item.protocol == "srt" and item.credential_id:
                    want = Wanted(spec.tenant_id, event_id, item.credential_id, item.credential_version)
                    self._wanted[item.id] = want
                    ids.add(item.id)
        if ids:
            self._by_event[event_id] = ids
        for input_id in [i for i, (want, _) in self._held.items() if self._wanted.get(i) != want]:
            del self._held[input_id]
        self._changed.set()

    def get(self, input_id: str, credential_id: str, version: int) -> Secret | None:
        """The passphrase of this credential version, if held (called on libsrt's threads)."""
        held = self._held.get(input_id)
        if held is None or (held[0].credential_id, held[0].version) != (credential_id, version):
            return None
        return held[1]

    def missing(self) -> list[str]:
        return sorted(i for i, want in self._wanted.items() if self._held.get(i, (None,))[0] != want)

    async def run(self) -> None:
        failures = 0
        while True:
            await self._changed.wait()
            self._changed.clear()
            if await self._resolve_missing():
                failures = 0
                continue
            # back off while the vault is away or refuses; a desired-state change retries at once
            failures += 1
            delay = min(RETRY_MAX_S, self._retry_s * 2 ** min(failures - 1, 10))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), delay)
            self._changed.set()

    async def _resolve_missing(self) -> bool:
        """Resolve every passphrase not held; False when one could not be (try again later)."""
        complete = True
        for input_id in self.missing():
            want = self._wanted[input_id]
            try:
                secret, _ = await self._vault.resolve_input(
                    want.tenant_id, want.event_id, input_id, want.credential_id, self._worker
                )
            except VaultUnavailable:
                log.warning("ingest.vault_unavailable", extra={"input_id": input_id})
                return False
            except VaultFailure as exc:
                log.warning("ingest.passphrase_unresolved", extra={"input_id": input_id, "code": exc.code})
                complete = False
                continue
            if self._wanted.get(input_id) == want:  # still wanted as it was when asked
                self._held[input_id] = (want, secret)
                log.info("ingest.passphrase_resolved", extra={"input_id": input_id, "version": want.version})
        return complete
