"""SRT sockets polled from the event loop at a steady pace, their messages handed over in batches.

libsrt has its own epoll (``srt_epoll_*``), not a file descriptor asyncio could watch. A blocking
``srt_epoll_uwait`` in a thread wakes every 10 ms inside libsrt even when idle, and every batch it hands
over costs a thread switch, a GIL hand-off and a wake-up of the loop; on a virtual machine each of those
costs tens of microseconds, more than the Python that handles the batch. So the loop polls instead: a
non-blocking ``srt_epoll_uwait`` every ``BUSY_POLL_S`` while connections are open (a live stream
delivers about ``BUSY_POLL_S`` of media per pass: 40 ms at most added to a latency of 120 ms or more),
every ``IDLE_POLL_S`` while only listeners wait (libsrt finishes handshakes on its own threads; the
accept waits at most this long). The non-blocking calls release the GIL, so libsrt's threads can run
their Python callbacks (log handler, listen hook) meanwhile.

Each connection's messages go into its ``Inbox``: a bounded deque read by one task. When an inbox is
full its newest messages are dropped and counted: the reader is too slow for that connection, and it
sees a continuity gap, never unbounded memory.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from . import lib as L
from .socket import SrtError, SrtSocket

log = logging.getLogger(__name__)

BUSY_POLL_S = 0.04  # connections open: media gathers between passes, one pass per batch
IDLE_POLL_S = 0.1  # only listeners: how long an accepted caller may wait for its accept
LINGER_POLL_S = 0.02  # a broken connection's last messages are looked for this often
LINGER_MARGIN_S = 0.25  # after a break, read for one latency and this much more
MAX_EVENTS = 64
INBOX_MAX_MESSAGES = 8192  # ~10 MB of 1316-byte messages
_RECV_BUFFER = 1500  # one live-mode message is at most 1456 bytes


class Inbox:
    """Messages of one connection, from the poller to one reader task (both on the event loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_messages: int = INBOX_MAX_MESSAGES) -> None:
        self._loop = loop
        self._items: deque[bytes] = deque()
        self._event = asyncio.Event()
        self.max_messages = max_messages
        self.dropped = 0
        self.closed_reason: str | None = None

    def put(self, batch: list[bytes]) -> None:
        room = self.max_messages - len(self._items)
        if room < len(batch):
            self.dropped += len(batch) - max(room, 0)
            batch = batch[: max(room, 0)]
        self._items.extend(batch)
        self._event.set()

    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
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
    """Every SRT socket of one process, polled on its event loop: listeners accepted, connections drained."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None = None, busy_poll_s: float = BUSY_POLL_S
    ) -> None:
        self._lib = L.load()
        self._loop = loop or asyncio.get_running_loop()
        self._busy_poll_s = busy_poll_s
        self._eid = self._lib.srt_epoll_create()
        if self._eid < 0:
            raise SrtError("srt_epoll_create", -1, "cannot create an SRT epoll")
        self._lib.srt_epoll_set(self._eid, L.SRT_EPOLL_ENABLE_EMPTY)
        self._watches: dict[int, _Watch] = {}
        self._connections = 0  # watches with an inbox: while there are any, poll at the busy pace
        self._lingering: dict[int, tuple[_Watch, float, str]] = {}  # broken, still delivering
        self._events = (L.SrtEpollEvent * MAX_EVENTS)()
        self._buf = ctypes.create_string_buffer(_RECV_BUFFER)
        self._timer: asyncio.Handle | None = None
        self._closed = False
        self._in_pass = False
        self.accepted = 0

    def start(self) -> None:
        self._timer = self._loop.call_soon(self._pass)

    def _soon(self) -> None:
        """Poll at the next turn of the loop (a connection was just added: its media is arriving).
        Within a pass (a caller accepted by it) the pass itself picks the next pace when it ends."""
        if self._timer is not None and not self._closed and not self._in_pass:
            self._timer.cancel()
            self._timer = self._loop.call_soon(self._pass)

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
        self._soon()  # leave the idle pace now: the connection's media is already arriving

    def _add(self, watch: _Watch, events: int) -> None:
        flags = ctypes.c_int(events)
        if self._lib.srt_epoll_add_usock(self._eid, watch.sock.handle, ctypes.byref(flags)) < 0:
            raise SrtError("srt_epoll_add_usock", -1, "cannot watch the socket")
        self._forget(watch.sock.handle)
        self._watches[watch.sock.handle] = watch
        self._connections += watch.inbox is not None

    def _forget(self, handle: int) -> None:
        old = self._watches.pop(handle, None)
        if old is not None and old.inbox is not None:
            self._connections -= 1

    def unwatch(self, sock: SrtSocket) -> None:
        self._forget(sock.handle)
        self._lingering.pop(sock.handle, None)
        self._lib.srt_epoll_remove_usock(self._eid, sock.handle)

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._lib.srt_epoll_release(self._eid)

    # --- the pass: a plain callback, rescheduled at the pace the watched sockets call for ---

    def _pass(self) -> None:
        if self._closed:
            return
        self._in_pass = True
        try:
            self.poll()
        except Exception:
            log.exception("srt.poller_crashed")
            for watch in list(self._watches.values()):
                if watch.inbox is not None:
                    watch.inbox.close("SRT poller failed")
            return
        finally:
            self._in_pass = False
        if self._lingering:
            pace = LINGER_POLL_S
        elif self._connections:
            pace = self._busy_poll_s
        else:
            pace = IDLE_POLL_S
        self._timer = self._loop.call_later(pace, self._pass)

    def poll(self) -> None:
        """One pass: accept waiting callers, drain every readable connection (never blocks)."""
        events = self._events
        n = self._lib.srt_epoll_uwait(self._eid, events, MAX_EVENTS, 0)
        self._drain_lingering()
        for i in range(max(n, 0)):
            watch = self._watches.get(events[i].fd)
            if watch is None:
                continue
            if watch.on_accept is not None:
                self._accept_all(watch)
            elif watch.inbox is not None:
                self._drain(watch, watch.inbox, events[i].events)

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
                watch.on_accept(*accepted)
            except Exception:
                log.exception("srt.accept_handler_failed")
                accepted[0].close()

    def _drain(self, watch: _Watch, inbox: Inbox, flags: int) -> None:
        # the hot loop of SRT ingest: libsrt's functions called directly, one ctypes call per message.
        # Through CDLL, which lets the GIL go during each call: libsrt's own threads call back into
        # Python (log handler, listen callback) while holding locks srt_recvmsg takes, so a call that
        # kept the GIL could deadlock against them.
        lib, buf = self._lib, self._buf
        recv, string_at, handle, size = lib.srt_recvmsg, ctypes.string_at, watch.sock.handle, len(buf)
        batch: list[bytes] = []
        while True:
            n = recv(handle, buf, size)
            if n < 0:
                break
            batch.append(string_at(buf, n))
        code = lib.srt_getlasterror(None)
        if batch:
            inbox.put(batch)
        if code == L.SRT_EASYNCRCV and not (flags & L.SRT_EPOLL_ERR and watch.sock.state >= L.SRTS_BROKEN):
            lib.srt_clearlasterror()
            return  # nothing more for now: the usual end of a pass
        reason = (lib.srt_getlasterror_str() or b"").decode(errors="replace") or "receive failed"
        lib.srt_clearlasterror()
        lingering = self._lingering.get(handle)
        if code in (L.SRT_ECONNLOST, L.SRT_EASYNCRCV) and lingering is None:
            # The peer is gone, yet libsrt still holds up to one latency of media that becomes
            # readable only at its play time (until then a read says "connection lost"). Keep reading,
            # off epoll (which would report the error in a loop), until that latency has passed.
            self._forget(handle)
            lib.srt_epoll_remove_usock(self._eid, handle)
            reason = reason if code == L.SRT_ECONNLOST else "connection broken"
            self._lingering[handle] = (watch, time.monotonic() + watch.latency_s + LINGER_MARGIN_S, reason)
            return
        if lingering is not None:
            if code in (L.SRT_ECONNLOST, L.SRT_EASYNCRCV) and time.monotonic() < lingering[1]:
                return
            reason = lingering[2]  # why it broke, not what a read of the released socket says
        self.unwatch(watch.sock)
        inbox.close(reason)

    def _drain_lingering(self) -> None:
        for watch, _, _ in list(self._lingering.values()):
            assert watch.inbox is not None
            self._drain(watch, watch.inbox, 0)
