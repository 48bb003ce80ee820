"""Session-wide fixtures: real peers started on free loopback ports and always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.nats_server import NatsServer, start_nats


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = start_nats(Path(tmp_path_factory.mktemp("nats")))
    try:
        yield server
    finally:
        server.stop()
