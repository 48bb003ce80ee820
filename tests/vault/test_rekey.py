"""Which master key versions a rekey retires (pure)."""

from __future__ import annotations

import pytest

from services.vault import rekey
from services.vault.envelope import Keyring

K = {v: bytes([v]) * 32 for v in (1, 2, 3)}


@pytest.mark.parametrize(
    ("requested", "previous", "in_use", "force", "retired"),
    [
        (set(), False, {3: 5}, False, set()),
        (set(), True, {3: 5}, False, {1, 2}),
        ({1}, False, {3: 5}, False, {1}),
        ({3}, False, {3: 5}, False, set()),  # never the active version
        ({1}, False, {1: 2, 3: 5}, True, {1}),  # forced: its secrets become unreadable
    ],
)
def test_to_retire(
    requested: set[int], previous: bool, in_use: dict[int, int], force: bool, retired: set[int]
) -> None:
    assert rekey.to_retire(Keyring(K), requested, previous, in_use, force) == retired


def test_a_version_still_in_use_is_not_retired_without_force() -> None:
    with pytest.raises(rekey.StillInUse, match=r"version\(s\) 1, 2 still protect 3 secret"):
        rekey.to_retire(Keyring(K), set(), True, {1: 1, 2: 2, 3: 9}, False)
