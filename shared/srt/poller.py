"""SRT sockets driven from one thread, their messages handed to asyncio through bounded inboxes.

libsrt has its own epoll (``srt_epoll_*``), not a file descriptor asyncio could watch, so a dedicated
thread waits in ``srt_epoll_uwait`` (the GIL is released while it waits), accepts callers on listening
sockets and drains readable ones. Each connection's messages go into its ``Inbox``: a bounded deque
whose consumer is woken with one ``call_soon_threadsafe`` per batch, not per message. When an inbox is
full its newest messages are dropped and counted: the event loop is too slow for that connection,
and the reader of that connection sees a continuity gap, never unbounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from . import lib as L
from .socket import SrtError, SrtSocket

log = logging.getLogger(__name__)

WAIT_MS = 100  # how often the thread looks at its stop flag
LINGER_POLL_MS = 20  # how often a broken connection's last messages are looked for
LINGER_MARGIN_S = 0.25  # after a break, read for one latency and this much more
MAX_EVENTS = 64
INBOX_MAX_MESSAGES = 8192  # ~10 MB of 1316-byte messages
COALESCE_S = 0.04  # after a busy pass, let messages gather: fewer loop wake-ups for the same data
_RECV_BUFFER = 1500  # one live-mode message is at most 1456 bytes


class Inbox:
    """Messages of one connection, from the poller thread to one asyncio consumer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_messages: int = INBOX_MAX_MESSAGES) -> None:
        self._loop = loop
        self._items: deque[bytes] = deque()
        self._event = asyncio.Event()
        self._wake_scheduled = False
        self.max_messages = max_messages
        self.dropped = 0
        self.closed_reason: str | None = None

    # --- poller thread ---

    def put(self, batch: list[bytes]) -> None:
        room = self.max_messages - len(self._items)
        if room < len(batch):
            self.dropped += len(batch) - max(room, 0)
            batch = batch[: max(room, 0)]
        self._items.extend(batch)
        self._wake()

    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        self._wake()

    def _wake(self) -> None:
        if not self._wake_scheduled:
            self._wake_scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
                self._loop.call_soon_threadsafe(self._on_wake)

    # --- event loop ---

    def _on_wake(self) -> None:
        self._wake_scheduled = False
        self._event.set()

    async def get(self, idle_s: float | None = None) -> list[bytes] | None:
        """Every message waiting (at least one), ``[]`` once the connection is closed and drained, or
        None when ``idle_s`` passed with nothing (the stream paused: a reader may flush what it holds)."""
        while True:
            self._event.clear()
            if self._items:
                items = self._items
                return [items.popleft() for _ in range(len(items))]
            if self.closed_reason is not None:
                return []
            if idle_s is None:
                await self._event.wait()
                continue
            timer = self._loop.call_later(idle_s, self._event.set)
            try:
                await self._event.wait()
            finally:
                timer.cancel()
            if not self._items and self.closed_reason is None:
                return None


@dataclass
class _Watch:
    sock: SrtSocket
    inbox: Inbox | None = None
    on_accept: Callable[[SrtSocket, str], None] | None = None
    latency_s: float = 1.0  # the connection's receive latency: how long media outlives a break


class SrtPoller:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None, coalesce_s: float = COALESCE_S) -> None:
        self._lib = L.load()
        self._loop = loop or asyncio.get_running_loop()
        self._coalesce_s = coalesce_s
        self._eid = self._lib.srt_epoll_create()
        if self._eid < 0:
            raise SrtError("srt_epoll_create", -1, "cannot create an SRT epoll")
        self._lib.srt_epoll_set(self._eid, L.SRT_EPOLL_ENABLE_EMPTY)
        self._watches: dict[int, _Watch] = {}
        self._lingering: dict[int, tuple[_Watch, float, str]] = {}  # broken, still delivering: thread-only
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.accepted = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="srt-poller", daemon=True)
        self._thread.start()

    def watch_listener(self, sock: SrtSocket, on_accept: Callable[[SrtSocket, str], None]) -> None:
        """``on_accept(socket, peer)`` runs on the event loop for every caller the listener accepted."""
        self._add(_Watch(sock, on_accept=on_accept), L.SRT_EPOLL_IN | L.SRT_EPOLL_ERR)

    def watch(self, sock: SrtSocket, inbox: Inbox) -> None:
        """Drain ``sock``'s messages into ``inbox``; the inbox closes once the connection broke and what
        libsrt still held for it has been read."""
        try:
            latency_s = sock.get_int(L.SRTO_RCVLATENCY) / 1000
        except SrtError:
            latency_s = 1.0
        self._add(_Watch(sock, inbox=inbox, latency_s=latency_s), L.SRT_EPOLL_IN | L.SRT_EPOLL_ERR)

    def _add(self, watch: _Watch, events: int) -> None:
        flags = ctypes.c_int(events)
        with self._lock:
            self._watches[watch.sock.handle] = watch
        if self._lib.srt_epoll_add_usock(self._eid, watch.sock.handle, ctypes.byref(flags)) < 0:
            with self._lock:
                self._watches.pop(watch.sock.handle, None)
            raise SrtError("srt_epoll_add_usock", -1, "cannot watch the socket")

    def unwatch(self, sock: SrtSocket) -> None:
        with self._lock:
            self._watches.pop(sock.handle, None)
        self._lib.srt_epoll_remove_usock(self._eid, sock.handle)

    async def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)
        self._lib.srt_epoll_release(self._eid)

    # --- the thread ---

    def _run(self) -> None:
        _name_os_thread(b"srt-poller")
        events = (L.SrtEpollEvent * MAX_EVENTS)()
        buf = ctypes.create_string_buffer(_RECV_BUFFER)
        try:
            while not self._stopping.is_set():
                wait = LINGER_POLL_MS if self._lingering else WAIT_MS
                n = self._lib.srt_epoll_uwait(self._eid, events, MAX_EVENTS, wait)
                if n < 0:
                    time.sleep(WAIT_MS / 1000)  # ok-sleep: an epoll error must not spin the thread
                    continue
                delivered = self._drain_lingering(buf)
                for i in range(n):
                    fd, flags = events[i].fd, events[i].events
                    with self._lock:
                        watch = self._watches.get(fd)
                    if watch is None:
                        continue
                    if watch.on_accept is not None:
                        self._accept_all(watch)
                    elif watch.inbox is not None:
                        delivered |= self._drain(watch, watch.inbox, buf, flags)
                if delivered and self._coalesce_s:
                    time.sleep(self._coalesce_s)  # ok-sleep: batch the next messages of a busy stream
        except Exception:
            log.exception("srt.poller_crashed")
            with self._lock:
                watches = list(self._watches.values())
            for watch in watches:
                if watch.inbox is not None:
                    watch.inbox.close("SRT poller failed")

    def _accept_all(self, watch: _Watch) -> None:
        assert watch.on_accept is not None
        while True:
            try:
                accepted = watch.sock.accept()
            except SrtError as exc:
                log.warning("srt.accept_failed", extra={"error": exc.text})
                return
            if accepted is None:
                return
            self.accepted += 1
            try:
                self._loop.call_soon_threadsafe(watch.on_accept, *accepted)
            except RuntimeError:
                accepted[0].close()
                return

    def _drain(self, watch: _Watch, inbox: Inbox, buf: ctypes.Array[ctypes.c_char], flags: int) -> bool:
        # the hot loop of SRT ingest: libsrt's functions called directly, one ctypes call per message.
        # Through CDLL, which lets the GIL go during each call: libsrt's own threads call back into
        # Python (log handler, listen callback) while holding locks srt_recvmsg takes, so a call that
        # kept the GIL could deadlock against them.
        lib = self._lib
        recv, string_at, handle, size = lib.srt_recvmsg, ctypes.string_at, watch.sock.handle, len(buf)
        batch: list[bytes] = []
        code, reason = L.SRT_EASYNCRCV, "connection broken"
        while True:
            n = recv(handle, buf, size)
            if n >= 0:
                batch.append(string_at(buf, n))
                continue
            code = lib.srt_getlasterror(None)
            reason = (lib.srt_getlasterror_str() or b"").decode(errors="replace") or "receive failed"
            lib.srt_clearlasterror()
            break
        if batch:
            inbox.put(batch)
        lingering = self._lingering.get(handle)
        if code == L.SRT_EASYNCRCV and not (flags & L.SRT_EPOLL_ERR and watch.sock.state >= L.SRTS_BROKEN):
            return bool(batch)
        if code in (L.SRT_ECONNLOST, L.SRT_EASYNCRCV) and lingering is None:
            # The peer is gone, yet libsrt still holds up to one latency of media that becomes
            # readable only at its play time (until then a read says "connection lost"). Keep reading,
            # off epoll (which would report the error in a loop), until that latency has passed.
            with self._lock:
                self._watches.pop(handle, None)
            lib.srt_epoll_remove_usock(self._eid, handle)
            self._lingering[handle] = (watch, time.monotonic() + watch.latency_s + LINGER_MARGIN_S, reason)
            return bool(batch)
        if lingering is not None:
            if code in (L.SRT_ECONNLOST, L.SRT_EASYNCRCV) and time.monotonic() < lingering[1]:
                return bool(batch)
            reason = lingering[2]  # why it broke, not what a read of the released socket says
        self._lingering.pop(handle, None)
        self.unwatch(watch.sock)
        inbox.close(reason)
        return bool(batch)

    def _drain_lingering(self, buf: ctypes.Array[ctypes.c_char]) -> bool:
        delivered = False
        for watch, _, _ in list(self._lingering.values()):
            assert watch.inbox is not None
            delivered |= self._drain(watch, watch.inbox, buf, 0)
        return delivered


def _name_os_thread(name: bytes) -> None:
    """Give the thread its name in /proc and top (Linux prctl PR_SET_NAME), so its CPU is told apart."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(15, ctypes.c_char_p(name[:15]), 0, 0, 0)
