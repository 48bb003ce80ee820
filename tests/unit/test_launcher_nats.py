"""The embedded NATS configuration: the production permissions file, placed on this machine."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from services.launcher import nats_embedded as ne


def test_the_production_file_gets_a_loopback_port_a_local_store_and_an_operator(tmp_path: Path) -> None:
    text = ne.config_text(ne.PERMISSIONS.read_text(), 4567, tmp_path / "js")
    assert 'listen: "127.0.0.1:4567"' in text and "port: 4222" not in text
    assert "http_port" not in text, "no monitoring port on a one-machine stack"
    assert f'store_dir: "{tmp_path / "js"}"' in text and "/data" not in text
    assert "user: operator" in text and "$FANOUT_NATS_OPERATOR_PASSWORD" in text
    for user in ne.SERVICE_USERS:  # every service the launcher starts has its user in the file
        assert f"user: {user}\n" in text


def test_a_file_whose_layout_changed_is_refused_rather_than_run_open() -> None:
    with pytest.raises(SystemExit, match="user: operator"):
        ne.config_text("port: 4222\njetstream {\n  store_dir: /data\n}\n", 4567, Path("/x"))


def test_passwords_are_made_once_kept_private_and_start_with_a_letter(tmp_path: Path) -> None:
    first = ne.passwords(tmp_path)
    assert set(first) == {*ne.SERVICE_USERS, ne.OPERATOR}
    assert all(pw[0].isalpha() and len(pw) >= 40 for pw in first.values())
    assert len(set(first.values())) == len(first), "one password per user"
    path = tmp_path / "nats-users.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ne.passwords(tmp_path) == first, "the same on every start"
