"""A TCP impairment proxy between a service and a real destination, on loopback.

It runs its own asyncio loop in a daemon thread, so sync and async tests use it the same way; every
method is thread-safe and returns once the change is in effect::

    with TcpProxy("127.0.0.1", nginx.rtmp_port) as proxy:
        url = f"rtmp://127.0.0.1:{proxy.port}/live/key"
        proxy.blackhole()     # accept, never read or forward: the sender's socket buffers fill up
        proxy.pass_through()  # back to normal; data held meanwhile flows on

Modes (one at a time): `pass_through()`; `refuse()` closes the listening socket, so connects get
ECONNREFUSED while connections already accepted carry on (one still in the listen backlog is
dropped without a reset, so wait with `wait_connections` first if that matters); `reset()` sends RST on every open connection and
every new one; `blackhole()` stalls open connections and accepts new ones without forwarding.
`reset_connections()` sends RST once on the open connections and keeps the mode. Shaping, set on top of
`pass_through`: `throttle(bytes_per_s)` caps each direction of each connection, `delay(ms)` holds every
chunk back that long without lowering throughput; `pass_through()` clears both.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from contextlib import suppress
from dataclasses import dataclass
from enum import Enum
from typing import Any, Self, TypeVar

from .procs import wait_until

T = TypeVar("T")

CHUNK = 65536
QUEUE_CHUNKS = 64  # per direction: bounds what the proxy holds for a slow or stalled side
# the kernel's receive buffer on the proxy's client side, fixed as on a real link: left to autotuning on
# loopback it grows to megabytes, and a throttled link would take tens of seconds to back up to the sender
RECV_BUFFER = 128 * 1024


class Mode(Enum):
    PASS = "pass"
    REFUSE = "refuse"
    RESET = "reset"
    BLACKHOLE = "blackhole"


@dataclass(eq=False)  # identity semantics: pipes live in a set
class _Pipe:
    """One proxied connection: the client side and the target side."""

    client_reader: asyncio.StreamReader
    client_writer: asyncio.StreamWriter
    target_reader: asyncio.StreamReader | None = None
    target_writer: asyncio.StreamWriter | None = None
    task: asyncio.Task[Any] | None = None


def _rst(writer: asyncio.StreamWriter | None) -> None:
    """Close with SO_LINGER 0 so the peer gets a TCP RST instead of a FIN."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    def __init__(
        self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host
        self.port = port
        self.mode = Mode.PASS
        self.bytes_per_s: float | None = None
        self.delay_s = 0.0
        self.connections = 0  # accepted since start, whatever the mode
        self.bytes_to_target = 0
        self.bytes_to_client = 0
        self._pipes: set[_Pipe] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"tcp-proxy->{target_port}", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None  # set unless blackholed

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._thread.is_alive():
            raise RuntimeError("proxy already started")
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with suppress(Exception):
            self._call(self._shutdown(), timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return (self.listen_host, self.port)

    @property
    def active(self) -> int:
        return len(self._pipes)

    # -- modes -------------------------------------------------------------------------------------------------

    def pass_through(self) -> None:
        self._call(self._apply(Mode.PASS, None, 0.0))

    def refuse(self) -> None:
        self._call(self._apply(Mode.REFUSE, self.bytes_per_s, self.delay_s))

    def reset(self) -> None:
        self._call(self._apply(Mode.RESET, self.bytes_per_s, self.delay_s))

    def blackhole(self) -> None:
        self._call(self._apply(Mode.BLACKHOLE, self.bytes_per_s, self.delay_s))

    def throttle(self, bytes_per_s: float) -> None:
        if bytes_per_s <= 0:
            raise ValueError("throttle needs a positive rate; use blackhole() to stop traffic")
        self._call(self._apply(Mode.PASS, bytes_per_s, self.delay_s))

    def delay(self, ms: float) -> None:
        if ms < 0:
            raise ValueError("delay cannot be negative")
        self._call(self._apply(Mode.PASS, self.bytes_per_s, ms / 1000.0))

    def reset_connections(self) -> int:
        """RST every open connection (both sides) now; returns how many there were."""
        return self._call(self._reset_all())

    def wait_connections(self, count: int, timeout: float) -> None:
        """Wait until at least `count` connections have been accepted in total."""
        wait_until(lambda: self.connections >= count, timeout, f"{count} connections through the proxy")

    # -- loop side -------------------------------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.listen_host, self.port, reuse_address=True
        )
        for sock in self._server.sockets:  # accepted connections inherit it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _apply(self, mode: Mode, bytes_per_s: float | None, delay_s: float) -> None:
        assert self._flowing is not None
        self.bytes_per_s, self.delay_s, self.mode = bytes_per_s, delay_s, mode
        if mode is Mode.REFUSE:
            await self._unlisten()
        elif self._server is None:
            await self._listen()
        if mode is Mode.RESET:
            await self._reset_all()
        if mode is Mode.BLACKHOLE:
            self._flowing.clear()
        else:
            self._flowing.set()

    async def _reset_all(self) -> int:
        pipes = list(self._pipes)
        for pipe in pipes:
            self._reset_pipe(pipe)
        return len(pipes)

    def _reset_pipe(self, pipe: _Pipe) -> None:
        _rst(pipe.client_writer)
        _rst(pipe.target_writer)
        if pipe.task is not None:
            pipe.task.cancel()
        self._pipes.discard(pipe)

    async def _shutdown(self) -> None:
        await self._unlisten()
        tasks = [p.task for p in self._pipes if p.task is not None]
        await self._reset_all()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        pipe = _Pipe(reader, writer, task=asyncio.current_task())
        if self.mode is Mode.RESET:
            _rst(writer)
            return
        self._pipes.add(pipe)
        try:
            await self._run(pipe)
        except asyncio.CancelledError:
            pass
        finally:
            self._pipes.discard(pipe)
            for w in (pipe.client_writer, pipe.target_writer):
                if w is not None and not w.transport.is_closing():
                    w.close()

    async def _run(self, pipe: _Pipe) -> None:
        assert self._flowing is not None
        await self._flowing.wait()  # a blackholed proxy accepts but does not even dial the target
        try:
            pipe.target_reader, pipe.target_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            _rst(pipe.client_writer)
            return
        up = asyncio.create_task(self._direction(pipe.client_reader, pipe.target_writer, to_target=True))
        down = asyncio.create_task(self._direction(pipe.target_reader, pipe.client_writer, to_target=False))
        try:
            # When one side closes, let the other finish what it has, then end the connection.
            _done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)

    async def _direction(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, to_target: bool
    ) -> None:
        """reader -> bounded queue -> writer, so delay holds chunks back without stopping the reads."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
        send = asyncio.create_task(self._send(queue, writer, to_target=to_target))
        try:
            while True:
                await self._flowing_wait()
                rate = self.bytes_per_s
                data = await reader.read(min(CHUNK, max(1, int(rate / 20))) if rate else CHUNK)
                if not data:
                    break
                await queue.put((time.monotonic() + self.delay_s, data))
                if rate:
                    await asyncio.sleep(len(data) / rate)  # ok-sleep: throttle pacing
            await queue.put((0.0, b""))
            await send
        except (ConnectionError, OSError):
            pass
        finally:
            send.cancel()
            with suppress(asyncio.CancelledError, ConnectionError, OSError):
                await send

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter, *, to_target: bool
    ) -> None:
        while True:
            due, data = await queue.get()
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # ok-sleep: delay impairment
            await self._flowing_wait()
            writer.write(data)
            await writer.drain()
            if to_target:
                self.bytes_to_target += len(data)
            else:
                self.bytes_to_client += len(data)

    async def _flowing_wait(self) -> None:
        assert self._flowing is not None
        await self._flowing.wait()
