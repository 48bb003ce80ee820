"""Master key sources: the format, errors that name an entry and never a key, the generated file."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from services.vault import master_keys
from services.vault.master_keys import MasterKeyError

A, B = os.urandom(32), os.urandom(32)
A64, B64 = base64.b64encode(A).decode(), base64.b64encode(B).decode()


@pytest.mark.parametrize(
    ("text", "keys", "tombstones"),
    [
        (A64, {1: A}, set()),
        (f"1:{A64}", {1: A}, set()),
        (f"1:{A64},2:{B64}", {1: A, 2: B}, set()),
        (f"# comment\n1:retired\n2:{B64}\n", {2: B}, {1}),
        (f" 3:{A64} , 7:{B64} ", {3: A, 7: B}, set()),
    ],
)
def test_parse(text: str, keys: dict[int, bytes], tombstones: set[int]) -> None:
    assert master_keys.parse(text, "src") == (keys, tombstones)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no master key"),
        (f"{A64},{B64}", "entry 1 has no version"),
        (f"0:{A64}", "bad version"),
        (f"x:{A64}", "bad version"),
        (f"1:{A64},1:{B64}", "version 1 is given twice"),
        ("1:not base64!", "version 1 is not valid base64"),
        (f"1:{base64.b64encode(b'short').decode()}", "must decode to 32 bytes, not 5"),
    ],
)
def test_bad_sources_are_named_without_the_key(text: str, message: str) -> None:
    with pytest.raises(MasterKeyError, match=message) as err:
        master_keys.parse(text, "FANOUT_VAULT_MASTER_KEY")
    assert A64 not in str(err.value) and B64 not in str(err.value)


def test_render_round_trips() -> None:
    text = master_keys.render({2: B, 3: A}, {1})
    assert master_keys.parse(text, "f") == ({2: B, 3: A}, {1})


def test_the_environment_wins_then_the_file_then_the_generated_default(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"4:{B64}\n")
    env = master_keys.load(tmp_path, {master_keys.ENV_KEY: A64, master_keys.ENV_FILE: str(key_file)})
    assert (env.origin, env.keys, env.managed) == ("env", {1: A}, False)
    from_file = master_keys.load(tmp_path, {master_keys.ENV_FILE: str(key_file)})
    assert (from_file.origin, from_file.keys, from_file.managed) == ("file", {4: B}, False)
    with pytest.raises(MasterKeyError, match="cannot read"):
        master_keys.load(tmp_path, {master_keys.ENV_FILE: str(tmp_path / "missing")})
    generated = master_keys.load(tmp_path, {})
    assert generated.origin == "generated" and generated.managed and list(generated.keys) == [1]
    path = tmp_path / master_keys.DEFAULT_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert master_keys.load(tmp_path, {}).keys == generated.keys, "generated once, then reused"


def test_a_managed_file_adds_versions_and_destroys_retired_ones(tmp_path: Path) -> None:
    keys = master_keys.load(tmp_path, {})
    assert keys.add_version() == 2 and keys.add_version() == 3
    keys.destroy({1, 2})
    again = master_keys.load(tmp_path, {})
    assert list(again.keys) == [3] and again.tombstones == {1, 2}
    assert keys.add_version() == 4, "a destroyed version number is never reused"
    assert stat.S_IMODE((tmp_path / master_keys.DEFAULT_FILE).stat().st_mode) == 0o600
