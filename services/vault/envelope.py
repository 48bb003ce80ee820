"""Envelope encryption of one secret, pure (no I/O): seal, open, rewrap.

Each secret gets a fresh 256-bit data key; the secret is encrypted with it (AES-256-GCM) and the data
key is wrapped (AES-256-GCM) by a versioned master key. Both encryptions authenticate associated data
that binds them to the tenant and the credential id (and the wrap to the master key version), so a
ciphertext copied into another row, or another tenant's, does not decrypt. Rotation rewraps: the data
key is unwrapped with the old master key and wrapped with the active one; the secret's ciphertext is
untouched. Errors carry a stable ``code`` and a message that says what to do; none repeat a secret.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_CONTEXT = b"fanout-vault/v1"

Random = Callable[[int], bytes]


class EnvelopeError(Exception):
    code = "decrypt_failed"


class Tampered(EnvelopeError):
    code = "decrypt_failed"


class RetiredMasterKey(EnvelopeError):
    code = "master_key_retired"


class UnknownMasterKey(EnvelopeError):
    code = "master_key_unknown"


class NoActiveMasterKey(EnvelopeError):
    code = "no_master_key"


@dataclass(frozen=True)
class Keyring:
    """Master keys by version. ``retired`` versions are refused even where their key is still known."""

    keys: Mapping[int, bytes] = field(repr=False)
    retired: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        for version, key in self.keys.items():
            if version < 1 or len(key) != KEY_BYTES:
                raise ValueError(f"master key version {version} must be >= 1 and {KEY_BYTES} bytes")

    @property
    def versions(self) -> list[int]:
        return sorted(set(self.keys) | set(self.retired))

    @property
    def active(self) -> int:
        usable = [v for v in self.keys if v not in self.retired]
        if not usable:
            raise NoActiveMasterKey("the vault has no master key that is not retired: add a new version")
        return max(usable)

    def key(self, version: int) -> bytes:
        if version in self.retired:
            raise RetiredMasterKey(
                f"master key version {version} is retired: this secret was not rewrapped before the "
                "version was retired; set the credential's value again"
            )
        try:
            return self.keys[version]
        except KeyError:
            raise UnknownMasterKey(
                f"master key version {version} is not configured in this vault (known: "
                f"{', '.join(map(str, sorted(self.keys))) or 'none'})"
            ) from None


@dataclass(frozen=True)
class Sealed:
    master_version: int
    wrapped_key: bytes  # nonce || AES-GCM(master key, data key)
    ciphertext: bytes  # nonce || AES-GCM(data key, secret)

    def __repr__(self) -> str:
        return f"Sealed(master_version={self.master_version}, ciphertext={len(self.ciphertext)} bytes)"


def binding(tenant_id: str, credential_id: str) -> bytes:
    if "\0" in tenant_id or "\0" in credential_id:
        raise ValueError("ids must not contain NUL")
    return b"\0".join((_CONTEXT, tenant_id.encode(), credential_id.encode()))


def _wrap_aad(tenant_id: str, credential_id: str, version: int) -> bytes:
    return binding(tenant_id, credential_id) + b"\0wrap\0" + str(version).encode()


def _data_aad(tenant_id: str, credential_id: str) -> bytes:
    return binding(tenant_id, credential_id) + b"\0data"


def _encrypt(key: bytes, plaintext: bytes, aad: bytes, random: Random) -> bytes:
    nonce = random(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def _decrypt(key: bytes, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise Tampered("the ciphertext is truncated")
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise Tampered(
            "the ciphertext did not authenticate: it was altered, or it belongs to another "
            "credential or tenant"
        ) from None


def seal(
    keyring: Keyring, tenant_id: str, credential_id: str, plaintext: bytes, random: Random = os.urandom
) -> Sealed:
    version = keyring.active
    data_key = random(KEY_BYTES)
    ciphertext = _encrypt(data_key, plaintext, _data_aad(tenant_id, credential_id), random)
    wrapped = _encrypt(keyring.key(version), data_key, _wrap_aad(tenant_id, credential_id, version), random)
    return Sealed(version, wrapped, ciphertext)


def _data_key(keyring: Keyring, tenant_id: str, credential_id: str, sealed: Sealed) -> bytes:
    master = keyring.key(sealed.master_version)
    data_key = _decrypt(
        master, sealed.wrapped_key, _wrap_aad(tenant_id, credential_id, sealed.master_version)
    )
    if len(data_key) != KEY_BYTES:
        raise Tampered("the wrapped data key has the wrong length")
    return data_key


def open_sealed(keyring: Keyring, tenant_id: str, credential_id: str, sealed: Sealed) -> bytes:
    data_key = _data_key(keyring, tenant_id, credential_id, sealed)
    return _decrypt(data_key, sealed.ciphertext, _data_aad(tenant_id, credential_id))


def rewrap(
    keyring: Keyring, tenant_id: str, credential_id: str, sealed: Sealed, random: Random = os.urandom
) -> Sealed:
    """The same secret under the active master key. The ciphertext is checked (it must open) and kept."""
    data_key = _data_key(keyring, tenant_id, credential_id, sealed)
    _decrypt(data_key, sealed.ciphertext, _data_aad(tenant_id, credential_id))
    version = keyring.active
    if version == sealed.master_version:
        return sealed
    wrapped = _encrypt(keyring.key(version), data_key, _wrap_aad(tenant_id, credential_id, version), random)
    return Sealed(version, wrapped, sealed.ciphertext)
