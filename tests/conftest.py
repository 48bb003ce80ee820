"""Shared fixtures: real peers started on free loopback ports and always cleaned up.

- `nats_server` (session): one nats-server with JetStream.
- `nginx` (function): factory `nginx(**kwargs) -> NginxRtmp`, keyword arguments as `start_nginx_rtmp`
  (`tls`, `record`, `on_publish_url`, `notify_method`, `applications`, `extra_app_directives`); each
  instance gets its own directory under the test's tmp_path; all are stopped at teardown.
- `publisher` (function): factory `publisher(url, **kwargs) -> FfmpegProcess`, keyword arguments as
  `tests.peers.ffmpeg.publish`, log under tmp_path; every publisher still running is stopped at teardown.
- `tcp_proxy` (function): factory `tcp_proxy(target_port, target_host="127.0.0.1") -> TcpProxy`, started;
  all are stopped at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers import ffmpeg
from tests.peers.nats_server import NatsServer, start_nats
from tests.peers.nginx_rtmp import NginxRtmp, start_nginx_rtmp
from tests.peers.tcp_proxy import TcpProxy


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = start_nats(Path(tmp_path_factory.mktemp("nats")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[Callable[..., NginxRtmp]]:
    started: list[NginxRtmp] = []

    def make(**kwargs: Any) -> NginxRtmp:
        server = start_nginx_rtmp(tmp_path / f"nginx-{len(started)}", **kwargs)
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def publisher(tmp_path: Path) -> Iterator[Callable[..., ffmpeg.FfmpegProcess]]:
    started: list[ffmpeg.FfmpegProcess] = []

    def make(url: str, **kwargs: Any) -> ffmpeg.FfmpegProcess:
        kwargs.setdefault("log_path", tmp_path / f"publisher-{len(started)}.log")
        proc = ffmpeg.publish(url, **kwargs)
        started.append(proc)
        return proc

    try:
        yield make
    finally:
        for proc in started:
            ffmpeg.stop(proc)


@pytest.fixture
def tcp_proxy() -> Iterator[Callable[..., TcpProxy]]:
    started: list[TcpProxy] = []

    def make(target_port: int, target_host: str = "127.0.0.1") -> TcpProxy:
        proxy = TcpProxy(target_host, target_port).start()
        started.append(proxy)
        return proxy

    try:
        yield make
    finally:
        for proxy in started:
            proxy.stop()
