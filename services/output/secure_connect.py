"""What an output does before it connects: fetch its key from the vault (only the lease holder can),
and check the destination's address against the SSRF guard, pinning the address it checked.

A refusal by the vault or the guard is the destination's fault, not the network's: it comes back as
``Refused`` (the output backs off as for a rejected publish). A vault that does not answer is a
``ConnectionError`` (retried like a network failure).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote

from shared import netguard, urls
from shared.secret import Secret
from shared.vault_client import VaultClient, VaultFailure, VaultUnavailable

KeyResolver = Callable[[], Awaitable[Secret]]
PLACEHOLDER_KEY = "vault-credential"  # stands in for the key until connect time


class Refused(Exception):
    pass


@dataclass(frozen=True)
class Prepared:
    target: urls.Destination  # with the real stream key
    address: str  # connect here; TLS verifies and names ``target.host``
    key: Secret | None


def target_of(url: str, has_credential: bool) -> urls.Destination:
    """The destination of an output spec: a keyless URL gets a placeholder until the key is resolved."""
    return urls.parse_destination_url(f"{url.rstrip('/')}/{PLACEHOLDER_KEY}" if has_credential else url)


def key_resolver(
    vault: VaultClient, tenant_id: str, event_id: str, output_id: str, credential_id: str, worker: str
) -> KeyResolver:
    async def resolve() -> Secret:
        try:
            value, _kind = await vault.resolve(tenant_id, event_id, output_id, credential_id, worker)
        except VaultFailure as exc:
            raise Refused(f"the vault refused the credential ({exc.code}: {exc.description})") from None
        except VaultUnavailable:
            raise ConnectionError("the vault did not answer: the key cannot be fetched yet") from None
        return value

    return resolve


async def prepare(
    target: urls.Destination, resolve_key: KeyResolver | None, allowlist: netguard.Allowlist | None
) -> Prepared:
    key = None
    if resolve_key is not None:
        key = await resolve_key()
        target = dataclasses.replace(target, stream_name=key.reveal())
    address = target.host
    if allowlist is not None:
        try:
            address = (await netguard.resolve(target.host, target.port, allowlist)).address
        except netguard.DestinationRefused as exc:
            raise Refused(str(exc)) from None
    return Prepared(target, address, key)


# --- SRT: the passphrase is the credential ---

PLACEHOLDER_PASSPHRASE = "vault-credential-placeholder"  # 10 to 79 characters, as SRT wants


def srt_url_without_passphrase(url: str) -> tuple[str, str | None]:
    """An srt:// URL without its ``passphrase`` option, and the passphrase (None when it had none)."""
    head, qmark, query = url.partition("?")
    kept, passphrase = [], None
    for item in query.split("&") if qmark else []:
        name, _, value = item.partition("=")
        if name.lower() == "passphrase":
            passphrase = unquote(value)
        elif item:
            kept.append(item)
    return (f"{head}?{'&'.join(kept)}" if kept else head), passphrase


def srt_url_with_passphrase(url: str, passphrase: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}passphrase={quote(passphrase, safe='')}"


def srt_target_of(url: str, has_credential: bool) -> urls.SrtTarget:
    """The SRT destination of an output spec: a passphrase in the vault is a placeholder until connect."""
    return urls.parse_srt_url(srt_url_with_passphrase(url, PLACEHOLDER_PASSPHRASE) if has_credential else url)
