"""Credentials in the API: keys live in the vault, the orchestrator keeps references and hints only.

An output created with a URL that carries its key has the key split off into a new vault credential;
the row keeps the URL without the key, the credential id and the key's hint. An output may instead
reference an existing credential (its URL is then everything but the key). Destinations pass the
SSRF guard first. Vault refusals become API errors here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
from sqlalchemy.engine import Engine

from services.output import presets
from services.output.secure_connect import (
    PLACEHOLDER_PASSPHRASE,
    srt_url_with_passphrase,
    srt_url_without_passphrase,
)
from shared import netguard, urls
from shared import vault_messages as vm
from shared.secret import Secret
from shared.vault_client import VaultClient, VaultFailure, VaultUnavailable

from . import store, validation
from .errors import ApiError, conflict, not_found, unavailable, validation_error

log = logging.getLogger(__name__)

T = TypeVar("T")
_PLACEHOLDER_KEY = "credential"  # stands in for the key while a keyless URL is checked


def api_error(exc: VaultFailure, value_field: str = "value") -> ApiError:
    if exc.code == vm.NOT_FOUND:
        return not_found("credential")
    if exc.code == vm.CONFLICT:
        return conflict(exc.description)
    if exc.code == vm.INVALID:
        message = exc.description.removeprefix("value: ")
        return validation_error(f"{value_field}: {message}", value_field)
    if exc.code in (vm.PROBE_FAILED, vm.UNREACHABLE, vm.DESTINATION_REFUSED):
        return ApiError(422, "verification_failed", exc.description, "probe_url")
    if exc.code == vm.BAD_REQUEST:
        return validation_error(exc.description)
    return ApiError(500, "vault_error", f"{exc.code}: {exc.description}")


def require(vault: VaultClient | None) -> VaultClient:
    if vault is None:
        raise unavailable("the credential vault is not configured")
    return vault


async def call(coro: Awaitable[T], value_field: str = "value") -> T:
    try:
        return await coro
    except VaultFailure as exc:
        raise api_error(exc, value_field) from None
    except VaultUnavailable:
        raise unavailable("the credential vault did not answer; try again") from None


async def guard(url: str, allowlist: netguard.Allowlist, field: str = "url") -> None:
    """The SSRF guard at create time (the output worker checks again, and pins, at connect time).
    An SRT listener connects nowhere (the partner calls it): nothing to guard."""
    if url[:6].lower() == "srt://":
        try:
            if urls.parse_srt_url(url).mode == "listener":
                return
        except ValueError:
            pass  # the URL check names what is wrong
    try:
        await netguard.check_url(url, allowlist)
    except netguard.DestinationRefused as exc:
        raise validation_error(f"{field}: {exc}", field) from None


def split_key(url: str) -> tuple[str, str]:
    """An RTMP(S) push URL as (the URL without its key, the key)."""
    key = urls.parse_destination_url(url).stream_name
    if not url.endswith("/" + key):
        raise validation_error("url: the stream key must be the URL's last part", "url")
    return url[: -len(key) - 1], key


def is_rtmp(url: str) -> bool:
    return url[:8].lower().startswith(("rtmp://", "rtmps://"))


def is_srt(url: str) -> bool:
    return url[:6].lower() == "srt://"


def kind_for(url: str) -> str:
    """The credential kind an output's URL takes: its SRT passphrase, or its RTMP stream key."""
    return "srt_passphrase" if is_srt(url) else "stream_key"


def keyless_destination(body: validation.OutputCreate) -> validation.ResolvedDestination:
    """The destination of an output whose key is the credential ``body.credential_id``: its URLs
    without a key, checked as if the key were there."""
    if body.stream_key is not None:
        raise validation_error("stream_key: give a credential_id or a stream_key, not both", "stream_key")
    if body.url is not None and is_srt(body.url):  # the credential is the passphrase
        if srt_url_without_passphrase(body.url)[1] is not None:
            raise validation_error("url: give a passphrase or a credential_id, not both", "url")
        validation.check_destination(
            msgspec.structs.replace(
                body, url=srt_url_with_passphrase(body.url, PLACEHOLDER_PASSPHRASE), credential_id=None
            )
        )
        return validation.ResolvedDestination(body.url, None)
    if body.url is not None:
        base = body.url.rstrip("/")
    elif body.preset is not None:
        base = presets.get(body.preset).server
    else:
        raise validation_error("url: give the url without the key, or a preset, with a credential_id", "url")
    checked = validation.check_destination(
        msgspec.structs.replace(body, url=f"{base}/{_PLACEHOLDER_KEY}", credential_id=None)
    )
    backup = split_key(checked.backup_url)[0] if checked.backup_url else None
    return validation.ResolvedDestination(base, checked.preset, backup)


async def check_reference(
    vault: VaultClient | None,
    tenant_id: str,
    credential_id: str,
    probe_url: str = "",
    kind: str = "stream_key",
) -> vm.CredentialInfo:
    """A credential an output may use: the tenant's, of the kind it needs, not failed verification."""
    client = require(vault)
    try:
        if probe_url:
            reply = await call(client.verify(tenant_id, credential_id, probe_url))
            if reply.error is not None:
                raise VaultFailure(reply.error.code, reply.error.description)
            assert reply.credential is not None
            info = reply.credential
        else:
            info = await call(client.describe(tenant_id, credential_id))
    except ApiError as exc:
        if exc.status == 404:
            raise validation_error("credential_id: no such credential", "credential_id") from None
        raise
    except VaultFailure as exc:
        raise ApiError(
            422, "verification_failed", f"credential_id: {exc.description}", "credential_id"
        ) from None
    if info.kind != kind:
        raise validation_error(
            f"credential_id: this output needs a {kind}, not a {info.kind}", "credential_id"
        )
    if info.status == "invalid":
        raise ApiError(
            422,
            "verification_failed",
            f"credential_id: the credential failed verification ({info.last_error or 'invalid'}): rotate it",
            "credential_id",
        )
    return info


async def store_key(
    vault: VaultClient | None,
    tenant_id: str,
    output_name: str,
    key: str,
    preset: str | None,
    probe_url: str,
    value_field: str,
    kind: str = "stream_key",
) -> vm.CredentialInfo:
    """A new credential for a key (or SRT passphrase) that came with an output."""
    name = f"{output_name} ({kind.replace('_', ' ')})"[:200]
    create = require(vault).create(tenant_id, name, kind, Secret(key), preset or "", probe_url)
    return await call(create, value_field)


def input_passphrase_name(role: str, event_id: str) -> str:
    """What an SRT input's passphrase credential is called in the tenant's credential list."""
    return f"SRT input ({role}) of {event_id}"


async def store_input_passphrase(
    vault: VaultClient | None, tenant_id: str, role: str, event_id: str, passphrase: str
) -> vm.CredentialInfo:
    """A new credential for the passphrase that came with an SRT input."""
    create = require(vault).create(
        tenant_id, input_passphrase_name(role, event_id), "srt_passphrase", Secret(passphrase)
    )
    return await call(create, "passphrase")


class KeyMover:
    """Outputs stored before the vault (a URL with its key): each key moves into a new vault credential and
    the row keeps the URL without it; SRT inputs stored with their passphrase in the row: it moves into a
    new credential and the row keeps only the reference. Runs at start and retries until the vault answers."""

    def __init__(
        self,
        engine: Engine,
        vault: VaultClient,
        publish: Callable[[str], Awaitable[None]],
        retry_s: float = 2.0,
    ) -> None:
        self._engine = engine
        self._vault = vault
        self._publish = publish
        self._retry_s = retry_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self.run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def run(self) -> None:
        while True:
            try:
                moved = await self.move_all()
            except VaultUnavailable:
                await asyncio.sleep(self._retry_s)
                continue
            if moved:
                log.info("credentials.keys_moved_to_vault", extra={"outputs": moved})
            return

    async def move_all(self) -> int:
        moved, events = 0, set()
        for row in await asyncio.to_thread(store.outputs_with_keys, self._engine):
            found = self._secret_of(row)
            if found is None:
                continue
            base, key, kind = found
            try:
                info = await self._create(row, key, kind)
            except VaultFailure as exc:
                log.warning("credentials.key_not_moved", extra={"output_id": row.id, "code": exc.code})
                continue
            hint = info.hint.replace("…", "****") if kind == "stream_key" else "****"
            if await asyncio.to_thread(store.attach_credential, self._engine, row, base, info.id, hint):
                moved += 1
                events.add(row.event_id)
            else:  # the row changed meanwhile: leave it for the next start
                with contextlib.suppress(Exception):
                    await self._vault.delete(row.tenant_id, info.id)
        for legacy in await asyncio.to_thread(store.inputs_with_passphrases, self._engine):
            name = input_passphrase_name(legacy.role, legacy.event_id)
            try:
                info = await self._vault.create(
                    legacy.tenant_id, name, "srt_passphrase", Secret(legacy.passphrase)
                )
            except VaultFailure as exc:
                log.warning(
                    "credentials.passphrase_not_moved", extra={"input_id": legacy.id, "code": exc.code}
                )
                continue
            hint = urls.mask_secret(legacy.passphrase)
            if await asyncio.to_thread(
                store.attach_input_credential, self._engine, legacy, info.id, info.version, hint
            ):
                moved += 1
                events.add(legacy.event_id)
            else:
                with contextlib.suppress(Exception):
                    await self._vault.delete(legacy.tenant_id, info.id)
        for event_id in sorted(events):
            with contextlib.suppress(Exception):
                await self._publish(event_id)
        return moved

    @staticmethod
    def _secret_of(row: store.Output) -> tuple[str, str, str] | None:
        """(the URL without its secret, the secret, its kind), or None when the URL holds none."""
        if is_srt(row.url):
            base, passphrase = srt_url_without_passphrase(row.url)
            return (base, passphrase, "srt_passphrase") if passphrase else None
        if not is_rtmp(row.url):
            return None
        try:
            base, key = split_key(row.url)
        except (ValueError, ApiError):
            return None
        return base, key, "stream_key"

    async def _create(self, row: store.Output, key: str, kind: str) -> vm.CredentialInfo:
        name = f"{row.name} ({kind.replace('_', ' ')})"[:200]
        preset = row.preset or "" if kind == "stream_key" else ""
        try:
            return await self._vault.create(row.tenant_id, name, kind, Secret(key), preset)
        except VaultFailure as exc:
            if exc.code != vm.INVALID or not preset:
                raise
            # a key that no longer looks like its platform's: keep it, unchecked against the preset
            return await self._vault.create(row.tenant_id, name, kind, Secret(key))
