"""The ctypes binding over the system libsrt, through loopback listener/caller pairs on this machine."""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import Iterator

import pytest

from shared.srt import lib as L
from shared.srt import liblog
from shared.srt.poller import Inbox, SrtPoller
from shared.srt.socket import HookAnswer, Options, SrtError, SrtSocket
from shared.srt.stats import TransportCounters

PASSPHRASE = "correct-horse-battery-staple"

# Offsets printed by a C program compiled against libsrt 1.5.1's srt.h (x86-64): the layout is the ABI.
C_OFFSETS = {
    "pktRcvDropTotal": 68,
    "byteRcvUndecryptTotal": 128,
    "pktRcvRetrans": 164,
    "mbpsRecvRate": 192,
    "pktRcvBelated": 224,
    "pktFlightSize": 320,
    "msRTT": 328,
    "msRcvBuf": 388,
    "pktReorderTolerance": 428,
    "pktSentUniqueTotal": 432,
    "byteRecvUnique": 488,
}


def test_perfmon_layout_matches_the_libsrt_1_5_header() -> None:
    assert ctypes.sizeof(L.CBytePerfMon) == L.PERFMON_SIZE_1_5
    for name, offset in C_OFFSETS.items():
        assert getattr(L.CBytePerfMon, name).offset == offset, name


def test_library_is_libsrt_1_5() -> None:
    version = L.load().srt_getversion()
    assert version >> 16 == 1 and (version >> 8) & 0xFF == 5


class Listener:
    """A loopback listener whose hook records what it saw and answers from a table of stream ids."""

    def __init__(self, answers: dict[str, HookAnswer]) -> None:
        self.sock = SrtSocket()
        self.sock.configure(Options(latency_ms=120))
        self.sock.bind("127.0.0.1", 0)
        self.port = self.sock.local_port()
        self.seen: list[tuple[int, str, str]] = []
        self.threads: set[str] = set()
        self.answers = answers
        self.sock.set_listen_hook(self._hook)
        self.sock.listen()

    def _hook(self, ns: int, peer: str, streamid: str) -> HookAnswer:
        self.seen.append((ns, peer, streamid))
        self.threads.add(threading.current_thread().name)
        return self.answers.get(streamid, HookAnswer(False, L.SRT_REJX_NOTFOUND))


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener(
        {
            "open": HookAnswer(True),
            "secret": HookAnswer(True, passphrase=PASSPHRASE),
            "slow": HookAnswer(True, latency_ms=400),
        }
    )
    yield server
    server.sock.close()


def caller(port: int, streamid: str, passphrase: str = "") -> SrtSocket:
    sock = SrtSocket()
    sock.configure(Options(streamid=streamid, passphrase=passphrase), blocking=True)
    try:
        sock.connect("127.0.0.1", port)
    except BaseException:
        sock.close()
        raise
    return sock


async def test_messages_flow_from_caller_to_an_asyncio_inbox_and_stats_count_them(listener: Listener) -> None:
    poller = SrtPoller()
    poller.start()
    accepted: asyncio.Queue[tuple[SrtSocket, str]] = asyncio.Queue()
    poller.watch_listener(listener.sock, lambda s, peer: accepted.put_nowait((s, peer)))
    sender = await asyncio.to_thread(caller, listener.port, "open")
    try:
        conn, peer = await asyncio.wait_for(accepted.get(), 5)
        assert peer.startswith("127.0.0.1:")
        assert conn.get_str(L.SRTO_STREAMID) == "open"
        inbox = Inbox(asyncio.get_running_loop())
        poller.watch(conn, inbox)
        sent = [bytes([i]) * 1316 for i in range(200)]
        for message in sent:
            assert sender.sendmsg(message)
        got: list[bytes] = []
        while len(got) < len(sent):
            got += await asyncio.wait_for(inbox.get(), 5)
        assert got == sent  # in order, whole messages
        transport, interval = TransportCounters("receiver").update(conn.stats())
        assert interval.packets >= 200 and transport.latency_ms == 120
        assert transport.pkt_loss == 0 and transport.pkt_drop == 0
        _, sent_interval = TransportCounters("sender").update(sender.stats())
        assert sent_interval.packets >= 200
        # the caller goes away: the inbox closes after what was already received
        sender.close()
        assert await asyncio.wait_for(inbox.get(), 10) == []
        assert inbox.closed_reason
        conn.close()
    finally:
        sender.close()
        await poller.close()


class CountingPoller(SrtPoller):
    """Counts its passes: the pace is behaviour (how often libsrt is asked), not a speed."""

    passes = 0

    def poll(self) -> None:
        self.passes += 1
        super().poll()


async def test_poll_paces_itself_one_pass_at_a_time_through_accepts(listener: Listener) -> None:
    poller = CountingPoller(busy_poll_s=0.05)
    poller.start()
    accepted: asyncio.Queue[SrtSocket] = asyncio.Queue()

    def on_accept(sock: SrtSocket, peer: str) -> None:
        poller.watch(sock, Inbox(asyncio.get_running_loop()))  # within the pass that accepted it
        accepted.put_nowait(sock)

    poller.watch_listener(listener.sock, on_accept)
    senders = [await asyncio.to_thread(caller, listener.port, "open") for _ in range(3)]
    try:
        conns = [await asyncio.wait_for(accepted.get(), 5) for _ in senders]
        before, t0 = poller.passes, asyncio.get_running_loop().time()
        await asyncio.sleep(1.0)  # ok-sleep: the window the passes are counted in
        elapsed = asyncio.get_running_loop().time() - t0
        # one chain of passes at the busy pace (0.05 s): a pass that accepted a caller does not
        # start a second chain, which would double the rate with every accept
        assert 0.5 * elapsed / 0.05 <= poller.passes - before <= elapsed / 0.05 + 3
        for conn in conns:
            poller.unwatch(conn)
            conn.close()
    finally:
        for sender in senders:
            sender.close()
        await poller.close()


def test_unknown_stream_id_is_refused_during_the_handshake(listener: Listener) -> None:
    with pytest.raises(SrtError) as refused:
        caller(listener.port, "nobody")
    assert refused.value.code == L.SRT_ECONNREJ
    assert refused.value.reject_reason == L.SRT_REJX_NOTFOUND
    assert [sid for _, _, sid in listener.seen] == ["nobody"]
    assert listener.threads and threading.main_thread().name not in listener.threads  # libsrt's thread
    assert listener.sock.accept() is None  # nothing reached the accept queue


def test_per_connection_passphrase_set_in_the_hook(listener: Listener) -> None:
    rejections: list[liblog.Rejection] = []
    liblog.install(rejections.append)
    try:
        good = caller(listener.port, "secret", PASSPHRASE)
        good.close()
        with pytest.raises(SrtError) as wrong:
            caller(listener.port, "secret", "not-the-passphrase")
        assert wrong.value.reject_reason == L.SRT_REJ_BADSECRET
        with pytest.raises(SrtError) as missing:
            caller(listener.port, "secret")
        assert missing.value.reject_reason == L.SRT_REJ_UNSECURE
        # libsrt's own refusals name the socket the hook had accepted, so ingest can say which input
        wrong_ns, missing_ns = listener.seen[1][0], listener.seen[2][0]
        by_socket = {r.socket: r for r in rejections}
        assert by_socket[wrong_ns].reason == "wrong passphrase"
        assert by_socket[missing_ns].code == "UNSECURE"
    finally:
        liblog.remove(rejections.append)


def test_latency_set_in_the_hook_is_negotiated(listener: Listener) -> None:
    sock = caller(listener.port, "slow")
    try:
        assert sock.get_int(L.SRTO_PEERLATENCY) == 400  # the caller sends with the listener's latency
    finally:
        sock.close()


def test_a_hook_that_raises_refuses_instead_of_accepting() -> None:
    def broken(ns: int, peer: str, sid: str) -> HookAnswer:
        raise RuntimeError("bug")

    sock = SrtSocket()
    sock.configure(Options())
    sock.bind("127.0.0.1", 0)
    sock.set_listen_hook(broken)
    sock.listen()
    try:
        with pytest.raises(SrtError) as refused:
            caller(sock.local_port(), "x")
        assert refused.value.reject_reason == 1500
    finally:
        sock.close()


def test_connect_to_nothing_fails_with_an_error_text() -> None:
    import socket

    from tests.peers.ports import free_port

    sock = SrtSocket()
    sock.configure(Options(conn_timeout_ms=300), blocking=True)
    try:
        with pytest.raises(SrtError) as failed:
            sock.connect("127.0.0.1", free_port(socket.SOCK_DGRAM))
        assert failed.value.text
    finally:
        sock.close()


def test_rejection_lines_from_libsrt_are_parsed() -> None:
    line = "@520075861:newConnection: connection rejected due to: INTERNAL REJECTION - ERROR:BADSECRET"
    assert liblog.parse_rejection(line) == liblog.Rejection(520075861, "BADSECRET")
    ours = "@5:newConnection: connection rejected due to: INTERNAL REJECTION - ERROR:PREDEFINED:404"
    assert liblog.parse_rejection(ours) is None
    assert liblog.parse_rejection("srt_accept: no pending connection available at the moment") is None
