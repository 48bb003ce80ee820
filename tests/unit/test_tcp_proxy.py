"""The impairment proxy against a local echo server: every mode does what tests will rely on."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.peers.procs import wait_until
from tests.peers.tcp_proxy import Mode, TcpProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: EchoServer = self.server  # type: ignore[assignment]
        server.accepted += 1
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.accepted = 0

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", echo.port) as p:
        yield p


def connect(proxy: TcpProxy, timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(proxy.address, timeout=timeout)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def test_pass_forwards_both_ways_and_counts(proxy: TcpProxy, echo: EchoServer) -> None:
    with connect(proxy) as a, connect(proxy) as b:
        a.sendall(b"hello")
        b.sendall(b"world!")
        assert recv_exactly(a, 5) == b"hello"
        assert recv_exactly(b, 6) == b"world!"
        assert proxy.connections == 2
        assert proxy.active == 2
    wait_until(lambda: proxy.bytes_to_client == 11 and proxy.active == 0, 5, "counters to settle")
    assert proxy.bytes_to_target == 11
    assert echo.accepted == 2


def test_refuse_closes_the_port_but_keeps_open_connections(proxy: TcpProxy) -> None:
    with connect(proxy) as open_conn:
        proxy.wait_connections(1, 5)  # still in the listen backlog it would be dropped with the listener
        proxy.refuse()
        assert proxy.mode is Mode.REFUSE
        with pytest.raises(ConnectionRefusedError):
            connect(proxy)
        open_conn.sendall(b"still here")
        assert recv_exactly(open_conn, 10) == b"still here"
    proxy.pass_through()
    with connect(proxy) as again:
        again.sendall(b"back")
        assert recv_exactly(again, 4) == b"back"


def test_reset_sends_rst_to_open_and_new_connections(proxy: TcpProxy) -> None:
    with connect(proxy) as conn:
        conn.sendall(b"x")
        assert recv_exactly(conn, 1) == b"x"
        proxy.reset()
        with pytest.raises(ConnectionResetError):
            conn.recv(10)
    # A new connection is accepted and reset at once: the RST can even beat connect() returning.
    with pytest.raises(ConnectionResetError), connect(proxy) as new_conn:
        new_conn.recv(10)
    proxy.pass_through()
    with connect(proxy) as ok:
        ok.sendall(b"y")
        assert recv_exactly(ok, 1) == b"y"


def test_reset_connections_keeps_the_mode(proxy: TcpProxy) -> None:
    with connect(proxy) as conn:
        conn.sendall(b"x")
        assert recv_exactly(conn, 1) == b"x"
        assert proxy.reset_connections() == 1
        with pytest.raises(ConnectionResetError):
            conn.recv(10)
    assert proxy.mode is Mode.PASS
    with connect(proxy) as ok:
        ok.sendall(b"z")
        assert recv_exactly(ok, 1) == b"z"


def test_blackhole_accepts_but_forwards_nothing_until_pass(proxy: TcpProxy, echo: EchoServer) -> None:
    with connect(proxy) as conn:
        conn.sendall(b"a")
        assert recv_exactly(conn, 1) == b"a"
        proxy.blackhole()
        conn.sendall(b"held")
        conn.settimeout(0.5)
        with pytest.raises(TimeoutError):
            conn.recv(10)
        with connect(proxy) as stalled:
            proxy.wait_connections(2, 5)
            assert echo.accepted == 1  # the blackholed connection never reached the target
            proxy.pass_through()
            conn.settimeout(5)
            assert recv_exactly(conn, 4) == b"held"
            stalled.sendall(b"late")
            assert recv_exactly(stalled, 4) == b"late"


def _round_trip(proxy: TcpProxy, size: int) -> float:
    payload = bytes(range(256)) * (size // 256)
    with connect(proxy, timeout=30) as conn:
        started = time.monotonic()
        sender = threading.Thread(target=conn.sendall, args=(payload,))
        sender.start()
        assert recv_exactly(conn, len(payload)) == payload
        sender.join()
        return time.monotonic() - started


def test_throttle_caps_the_rate(proxy: TcpProxy) -> None:
    proxy.throttle(200_000)
    elapsed = _round_trip(proxy, 200_000)
    assert elapsed >= 0.8  # 200 kB at 200 kB/s; a lower bound a slow machine cannot break
    proxy.pass_through()
    assert proxy.bytes_per_s is None


def test_delay_holds_each_direction_back(proxy: TcpProxy) -> None:
    proxy.delay(250)
    with connect(proxy) as conn:
        started = time.monotonic()
        conn.sendall(b"ping")
        assert recv_exactly(conn, 4) == b"ping"
        assert time.monotonic() - started >= 0.45  # 250 ms each way
    proxy.pass_through()
    assert proxy.delay_s == 0.0


def test_throttle_rejects_nonsense(proxy: TcpProxy) -> None:
    with pytest.raises(ValueError, match="positive rate"):
        proxy.throttle(0)
    with pytest.raises(ValueError, match="negative"):
        proxy.delay(-1)


def test_unreachable_target_resets_the_client() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    with (
        TcpProxy("127.0.0.1", dead_port) as proxy,
        pytest.raises(ConnectionResetError),  # the RST can beat connect() returning
        connect(proxy) as conn,
    ):
        conn.recv(10)


def test_stop_closes_the_port_and_connections(echo: EchoServer) -> None:
    proxy = TcpProxy("127.0.0.1", echo.port).start()
    conn = connect(proxy)
    try:
        conn.sendall(b"q")
        assert recv_exactly(conn, 1) == b"q"
        proxy.stop()
        with pytest.raises(ConnectionRefusedError):
            connect(proxy)
        conn.settimeout(5)
        with pytest.raises(ConnectionResetError):
            conn.recv(10)
    finally:
        conn.close()
        proxy.stop()
