"""Vault request/reply messages (``subjects.vault_request(op)``), frozen msgspec Structs.

A secret never travels in the clear: requests carry it as a ``SealedValue`` sealed to the vault's
transport key, and a resolve reply carries it sealed to the requesting worker's one-time key
(``shared.sealed_box``). Every reply has ``error`` set on refusal: a typed ``(code, description)``.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import msgspec

CredentialKind = Literal["stream_key", "srt_passphrase", "rtmp_userpass"]
CredentialStatus = Literal["unverified", "valid", "invalid"]

# error codes
NOT_FOUND = "not_found"
CONFLICT = "conflict"
INVALID = "invalid"  # the value fails its format check
PROBE_FAILED = "probe_failed"  # the destination refused the credential
UNREACHABLE = "destination_unreachable"  # the live probe could not reach the destination to try it
DESTINATION_REFUSED = "destination_refused"  # the probe URL is not allowed (SSRF guard)
NO_LEASE = "no_lease"  # the requester does not hold the output's lease
NOT_REFERENCED = "not_referenced"  # the output does not reference that credential
AUDIT_UNAVAILABLE = "audit_unavailable"
TRANSPORT_KEY = "transport_key_unknown"  # sealed to a vault key this vault does not have: fetch it again
BAD_REQUEST = "bad_request"
INTERNAL = "internal"
# decrypt_failed, master_key_retired, master_key_unknown, no_master_key: services.vault.envelope


class VaultError(msgspec.Struct, frozen=True):
    code: str
    description: str


class SealedValue(msgspec.Struct, frozen=True):
    key_version: int  # which of the vault's transport keys it is sealed to (0 in a resolve reply)
    ephemeral: bytes  # the sender's one-time X25519 public key
    box: bytes  # nonce || AES-256-GCM ciphertext

    def __repr__(self) -> str:
        return f"SealedValue(key_version={self.key_version}, {len(self.box)} bytes)"


def value_context(op: str, tenant_id: str, credential_id: str = "", output_id: str = "") -> bytes:
    """What a sealed value is bound to: it opens only for the same operation, tenant and ids."""
    return "\0".join(("fanout-vault", op, tenant_id, credential_id, output_id)).encode()


class CredentialInfo(msgspec.Struct, frozen=True):
    """Everything about a credential but its value: ``hint`` shows at most its last four characters."""

    id: str
    tenant_id: str
    name: str
    kind: CredentialKind
    hint: str
    version: int  # bumped on every change: a rotate or delete may name it to fail on a concurrent change
    preset: str = ""
    status: CredentialStatus = "unverified"
    last_error: str = ""
    verified_at: float = 0.0
    probed: bool = False  # the last verification included a live probe
    master_version: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0


# --- requests ---


class TransportKeyRequest(msgspec.Struct, frozen=True):
    pass


class CreateCredential(msgspec.Struct, frozen=True):
    tenant_id: str
    name: str
    kind: CredentialKind
    value: SealedValue  # value_context("create", tenant_id)
    preset: str = ""
    probe_url: str = ""  # verify with a live probe against this destination (the URL without the key)


class RotateCredential(msgspec.Struct, frozen=True):
    tenant_id: str
    credential_id: str
    value: SealedValue  # value_context("rotate", tenant_id, credential_id)
    expected_version: int = 0  # 0: whatever the current version is
    probe_url: str = ""


class DeleteCredential(msgspec.Struct, frozen=True):
    tenant_id: str
    credential_id: str
    expected_version: int = 0


class VerifyCredential(msgspec.Struct, frozen=True):
    tenant_id: str
    credential_id: str
    probe_url: str = ""


class DescribeCredential(msgspec.Struct, frozen=True):
    tenant_id: str
    credential_id: str


class ListCredentials(msgspec.Struct, frozen=True):
    tenant_id: str


class ResolveCredential(msgspec.Struct, frozen=True):
    """``resolve``: from the output worker that holds the output's lease, at connect time (``output_id``).
    ``resolve_input``: from ingest for an SRT input's passphrase, which it must hold before a caller's
    handshake (``input_id``). Either way the value is answered only for the credential desired state
    names there."""

    tenant_id: str
    event_id: str
    output_id: str
    credential_id: str
    worker: str  # an output's: must be the lease holder
    reply_key: bytes  # the worker's one-time X25519 public key: the value is sealed to it
    input_id: str = ""


class Rekey(msgspec.Struct, frozen=True):
    """Rotate the master key: add a version (where the vault manages its key file), rewrap every secret;
    then retire the versions named (``retire_previous``: every older one)."""

    retire_previous: bool = False
    retire: list[int] = []
    add_version: bool = True
    force: bool = False  # retire even versions that still protect a secret (it becomes unreadable)


# --- replies ---


class TransportKeyReply(msgspec.Struct, frozen=True):
    version: int
    public_key: bytes


class CredentialReply(msgspec.Struct, frozen=True):
    credential: CredentialInfo | None = None
    error: VaultError | None = None


class CredentialListReply(msgspec.Struct, frozen=True):
    credentials: list[CredentialInfo] = []
    error: VaultError | None = None


class ResolveReply(msgspec.Struct, frozen=True):
    value: SealedValue | None = None  # value_context("resolve", tenant, credential, output), to reply_key
    kind: str = ""
    error: VaultError | None = None


class RekeyReply(msgspec.Struct, frozen=True):
    active_version: int = 0
    versions: list[int] = []
    retired: list[int] = []
    rewrapped: int = 0
    failed: list[str] = []  # credential ids that could not be rewrapped (and why, in the audit)
    error: VaultError | None = None


class AuditRecord(msgspec.Struct, frozen=True):
    """One vault operation, on the durable audit stream. Never a value."""

    op: str
    tenant_id: str
    credential_id: str
    requester: str  # worker id for a resolve; the service otherwise
    outcome: str  # "ok" or an error code
    output_id: str = ""
    detail: str = ""
    ts: float = 0.0
    input_id: str = ""


_json = msgspec.json.Encoder()
T = TypeVar("T")


def encode(message: msgspec.Struct) -> bytes:
    return _json.encode(message)


def decode(data: bytes, kind: type[T]) -> T:
    return msgspec.json.decode(data, type=kind)
