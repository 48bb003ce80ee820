"""Secrets in transit on NATS: sealed to the recipient's X25519 public key, so no subscriber sees them.

A sender makes an ephemeral X25519 key pair, agrees a shared secret with the recipient's public key,
derives an AES-256-GCM key with HKDF (salted with both public keys) and encrypts. ``context`` is
authenticated too: it binds the box to what it is for (operation, tenant, credential), so a box cannot
be replayed into another request. The vault's key pair is derived from its master key (every vault
instance has the same one); an output worker makes a fresh pair for each resolve and the vault seals
the reply to it.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"fanout sealed box v1"
NONCE_BYTES = 12


class BoxError(ValueError):
    pass


def public_bytes(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_from_seed(seed: bytes, label: bytes) -> X25519PrivateKey:
    """A key pair derived from secret ``seed`` (a master key) for ``label``: the same on every vault."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"fanout x25519 " + label).derive(
        seed
    )
    return X25519PrivateKey.from_private_bytes(derived)


def _key(shared: bytes, ephemeral: bytes, recipient: bytes, context: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_INFO + b"\0" + context
    ).derive(shared)


def seal(recipient_public: bytes, plaintext: bytes, context: bytes) -> tuple[bytes, bytes]:
    """(ephemeral public key, nonce || ciphertext) for the holder of ``recipient_public``."""
    try:
        recipient = X25519PublicKey.from_public_bytes(recipient_public)
    except ValueError:
        raise BoxError("the recipient's public key is not an X25519 key") from None
    ephemeral = X25519PrivateKey.generate()
    eph_pub = public_bytes(ephemeral)
    key = _key(ephemeral.exchange(recipient), eph_pub, recipient_public, context)
    nonce = os.urandom(NONCE_BYTES)
    return eph_pub, nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def open_box(private: X25519PrivateKey, ephemeral_public: bytes, box: bytes, context: bytes) -> bytes:
    try:
        peer = X25519PublicKey.from_public_bytes(ephemeral_public)
        key = _key(private.exchange(peer), ephemeral_public, public_bytes(private), context)
        return AESGCM(key).decrypt(box[:NONCE_BYTES], box[NONCE_BYTES:], context)
    except (InvalidTag, ValueError):
        raise BoxError(
            "the sealed value did not open: wrong key, altered, or sealed for another purpose"
        ) from None
