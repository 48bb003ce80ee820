"""The vault's envelope encryption: round trips, tampering, moved ciphertexts, retired and unknown master
keys, rotation by rewrap."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from services.vault import envelope
from services.vault.envelope import Keyring, Sealed

K1, K2, K3 = (bytes([n]) * 32 for n in (1, 2, 3))
ONE = Keyring({1: K1})
TWO = Keyring({1: K1, 2: K2})


def counter_random() -> envelope.Random:
    """Deterministic 'randomness' so sealing is reproducible in a test."""
    counter = itertools.count(1)

    def random(n: int) -> bytes:
        return bytes([next(counter) % 256]) * n

    return random


@pytest.mark.parametrize(
    "plaintext",
    [b"", b"k", b"live_123456789_abcdefghijklmnop", "üñí©ødé-ключ".encode(), bytes(range(256)) * 8],
)
@pytest.mark.parametrize("keyring", [ONE, TWO, Keyring({1: K1, 2: K2, 3: K3}, frozenset({1}))])
def test_round_trip(plaintext: bytes, keyring: Keyring) -> None:
    sealed = envelope.seal(keyring, "tn_a", "cred_1", plaintext)
    assert sealed.master_version == keyring.active
    assert len(plaintext) < 8 or plaintext not in sealed.wrapped_key + sealed.ciphertext
    assert envelope.open_sealed(keyring, "tn_a", "cred_1", sealed) == plaintext


def test_every_seal_uses_a_fresh_data_key_and_nonce() -> None:
    a = envelope.seal(ONE, "tn_a", "cred_1", b"same secret")
    b = envelope.seal(ONE, "tn_a", "cred_1", b"same secret")
    assert a.ciphertext != b.ciphertext and a.wrapped_key != b.wrapped_key


def test_sealing_is_deterministic_given_the_randomness_and_the_layout_is_fixed() -> None:
    a = envelope.seal(ONE, "tn_a", "cred_1", b"secret", counter_random())
    b = envelope.seal(ONE, "tn_a", "cred_1", b"secret", counter_random())
    assert a == b
    # nonce (12) + data key (32) + tag (16); nonce (12) + secret + tag (16)
    assert len(a.wrapped_key) == 12 + 32 + 16 and len(a.ciphertext) == 12 + 6 + 16
    assert a.ciphertext[:12] == bytes([2]) * 12 and a.wrapped_key[:12] == bytes([3]) * 12


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


SEALED = envelope.seal(TWO, "tn_a", "cred_1", b"the-stream-key-0123")

TAMPERED = [
    ("ciphertext nonce", replace(SEALED, ciphertext=flip(SEALED.ciphertext, 0))),
    ("ciphertext body", replace(SEALED, ciphertext=flip(SEALED.ciphertext, 14))),
    ("ciphertext tag", replace(SEALED, ciphertext=flip(SEALED.ciphertext, -1))),
    ("ciphertext truncated", replace(SEALED, ciphertext=SEALED.ciphertext[:20])),
    ("ciphertext extended", replace(SEALED, ciphertext=SEALED.ciphertext + b"\0")),
    ("wrapped key nonce", replace(SEALED, wrapped_key=flip(SEALED.wrapped_key, 3))),
    ("wrapped key body", replace(SEALED, wrapped_key=flip(SEALED.wrapped_key, 20))),
    ("wrapped key tag", replace(SEALED, wrapped_key=flip(SEALED.wrapped_key, -1))),
    ("wrapped key empty", replace(SEALED, wrapped_key=b"")),
    ("version relabelled", replace(SEALED, master_version=1)),
]


@pytest.mark.parametrize(("what", "sealed"), TAMPERED, ids=[t[0] for t in TAMPERED])
def test_tampering_anywhere_fails_with_a_clear_error(what: str, sealed: Sealed) -> None:
    with pytest.raises(envelope.Tampered) as err:
        envelope.open_sealed(TWO, "tn_a", "cred_1", sealed)
    assert err.value.code == "decrypt_failed"
    assert "the-stream-key" not in str(err.value)


@pytest.mark.parametrize(
    ("tenant", "credential"),
    [("tn_b", "cred_1"), ("tn_a", "cred_2"), ("tn_b", "cred_2"), ("tn_a\0", "cred_1"[:-1])],
)
def test_a_ciphertext_moved_to_another_row_does_not_decrypt(tenant: str, credential: str) -> None:
    with pytest.raises((envelope.Tampered, ValueError)) as err:
        envelope.open_sealed(TWO, tenant, credential, SEALED)
    if isinstance(err.value, envelope.Tampered):
        assert "belongs to another credential or tenant" in str(err.value)


def test_ids_are_bound_unambiguously() -> None:
    a = envelope.binding("tn_ab", "c")
    b = envelope.binding("tn_a", "bc")
    assert a != b


def test_a_retired_master_key_version_fails_with_a_clear_error() -> None:
    sealed = envelope.seal(ONE, "tn_a", "cred_1", b"secret")
    retired = Keyring({1: K1, 2: K2}, frozenset({1}))
    with pytest.raises(envelope.RetiredMasterKey, match="master key version 1 is retired") as err:
        envelope.open_sealed(retired, "tn_a", "cred_1", sealed)
    assert err.value.code == "master_key_retired"
    with pytest.raises(envelope.RetiredMasterKey):
        envelope.rewrap(retired, "tn_a", "cred_1", sealed)


def test_an_unknown_master_key_version_fails_with_a_clear_error() -> None:
    sealed = envelope.seal(TWO, "tn_a", "cred_1", b"secret")
    with pytest.raises(envelope.UnknownMasterKey, match=r"version 2 is not configured .*known: 1"):
        envelope.open_sealed(ONE, "tn_a", "cred_1", sealed)


def test_rotation_rewraps_to_the_active_version_and_keeps_the_secret() -> None:
    secrets = {f"cred_{i}": f"key-{i}".encode() * (i + 1) for i in range(5)}
    sealed = {cid: envelope.seal(ONE, "tn_a", cid, value) for cid, value in secrets.items()}
    rotated = Keyring({1: K1, 2: K2})
    rewrapped = {cid: envelope.rewrap(rotated, "tn_a", cid, s) for cid, s in sealed.items()}
    after = Keyring({1: K1, 2: K2}, frozenset({1}))  # version 1 can now be retired
    for cid, s in rewrapped.items():
        assert s.master_version == 2
        assert s.ciphertext == sealed[cid].ciphertext, "rotation rewraps the data key only"
        assert s.wrapped_key != sealed[cid].wrapped_key
        assert envelope.open_sealed(after, "tn_a", cid, s) == secrets[cid]


def test_rewrap_at_the_active_version_changes_nothing_and_refuses_a_tampered_secret() -> None:
    sealed = envelope.seal(TWO, "tn_a", "cred_1", b"secret")
    assert envelope.rewrap(TWO, "tn_a", "cred_1", sealed) is sealed
    with pytest.raises(envelope.Tampered):
        envelope.rewrap(TWO, "tn_a", "cred_1", replace(sealed, ciphertext=flip(sealed.ciphertext, 13)))


@pytest.mark.parametrize(
    ("keyring", "active"),
    [
        (Keyring({1: K1}), 1),
        (Keyring({1: K1, 3: K3}), 3),
        (Keyring({1: K1, 2: K2}, frozenset({2})), 1),
    ],
)
def test_the_active_version_is_the_highest_not_retired(keyring: Keyring, active: int) -> None:
    assert keyring.active == active


def test_no_usable_master_key_is_an_error() -> None:
    with pytest.raises(envelope.NoActiveMasterKey):
        envelope.seal(Keyring({1: K1}, frozenset({1})), "tn_a", "c", b"x")


@pytest.mark.parametrize("keys", [{0: K1}, {1: b"short"}])
def test_bad_master_keys_are_refused(keys: dict[int, bytes]) -> None:
    with pytest.raises(ValueError):
        Keyring(keys)


def test_reprs_show_no_key_material() -> None:
    assert "\\x01" not in repr(ONE) and "keys" not in repr(ONE)
    assert repr(SEALED) == f"Sealed(master_version=2, ciphertext={len(SEALED.ciphertext)} bytes)"
