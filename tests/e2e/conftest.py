"""End-to-end fixtures: the whole stack as a user runs it, and recording nginx-rtmp destinations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.peers.nginx_rtmp import NginxRtmp, start_nginx_rtmp
from tests.peers.stack import Stack, start_stack
from tests.peers.tls import session_cert


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = start_stack(tmp_path / "stack", {"FANOUT_TLS_CA_FILE": str(session_cert().cert_file)})
    try:
        yield s
    finally:
        code = s.stop()
        assert code == 0, f"the launcher did not stop cleanly (exit {code}):\n{s.log_text()[-3000:]}"


@pytest.fixture
def destination(tmp_path: Path) -> Iterator[Callable[..., NginxRtmp]]:
    started: list[NginxRtmp] = []

    def make(tls: bool = False, **kwargs: object) -> NginxRtmp:
        server = start_nginx_rtmp(tmp_path / f"nginx{len(started)}", tls=tls, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()
