"""One RTMP/RTMPS destination: the asyncio shell around ``OutputMachine`` and ``ClientSession``.

The machine decides (connect, go live, back off, refuse, disable, stop); this shell connects, publishes,
writes, reads acknowledgements, and feeds the machine what happened. Media is written straight into
the transport from the event's fan-out (no task switch per packet); the transport's buffer is the
destination's bounded queue: past the class's high-water mark the destination drops to the next
keyframe and counts what it dropped, so a slow destination never delays the others or grows memory.
Connection attempts take a slot from the process's ``ReconnectGate`` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import random
import socket
import ssl
import sys
import termios
import time
from collections.abc import Callable
from typing import Protocol

from shared import netguard, urls
from shared.messages import OutputSpec, OutputStatus
from shared.rtmp import chunk
from shared.rtmp.client_session import (
    Acknowledged,
    ClientSession,
    ClientState,
    Published,
    Rejected,
    StatusReceived,
)
from shared.rtmp.errors import ProtocolError
from shared.secret import Secret

from . import policy as policies
from . import secure_connect
from . import state as sm
from .liveness import Liveness
from .meter import SentMeter
from .policy import DestinationPolicy, ProgramFacts
from .prepared import CHUNK_SIZE, Prepared, Wire
from .reconnect_gate import ReconnectGate
from .state import OutputMachine, OutputState
from .status import output_status

log = logging.getLogger(__name__)

EXTENDED_TS = 0xFFFFFF
SEND_BUFFER = 256 * 1024  # kernel send buffer: small enough that our own queue is where media waits
# TCP_USER_TIMEOUT, in stall limits: only a backstop, since the delivery-stall check ends a silent peer
# first, and a zero window on a throttled but draining link must not count as one
USER_TIMEOUT_STALLS = 2
_NETWORK_ERRORS = (OSError, ProtocolError, TimeoutError, asyncio.IncompleteReadError, EOFError)
_TLS_TRANSPORT_ERRORS = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


class DestinationRejected(Exception):
    """The destination answered and said no: bad key, name in use, TLS or auth failure."""


class Program(Protocol):
    """What a destination needs of its event's fan-out."""

    def attach(self, dest: RtmpDestination) -> None: ...
    def detach(self, dest: RtmpDestination) -> None: ...
    def facts(self) -> ProgramFacts: ...


class RtmpDestination:
    def __init__(
        self,
        tenant_id: str,
        event_id: str,
        spec: OutputSpec,
        policy: DestinationPolicy,
        program: Program,
        gate: ReconnectGate,
        on_status: Callable[[OutputStatus], None],
        worker: str,
        ca_file: str | None = None,
        rand: Callable[[], float] = random.random,
        resolve_key: secure_connect.KeyResolver | None = None,
        allowlist: netguard.Allowlist | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.event_id = event_id
        self.spec = spec
        self.policy = policy
        self.target = secure_connect.target_of(spec.url, bool(spec.credential_id))
        self.safe_url = spec.url if spec.credential_id else urls.sanitize(spec.url)
        self._resolve_key = resolve_key  # the key from the vault at each connect (spec.credential_id)
        self._allowlist = allowlist  # the SSRF guard, again at connect time, with the address pinned
        self._key: Secret | None = None
        self._program = program
        self._gate = gate
        self._on_status = on_status
        self._worker = worker
        self._ca_file = ca_file
        self._rand = rand
        self._wall_offset = time.time() - time.monotonic()
        self.machine = OutputMachine(policy, time.monotonic())
        self.bytes_sent = 0
        self.frames_sent = 0
        self.frames_dropped = 0
        self.drop_events = 0
        self.warnings: list[str] = []
        self._high, self._low = policies.queue_limits(policy, 0)
        self._writer: asyncio.StreamWriter | None = None
        self._transport: asyncio.WriteTransport | None = None  # the writer's, read once per packet
        self._reader: asyncio.StreamReader | None = None
        self._session: ClientSession | None = None
        self._liveness: Liveness | None = None
        self._conn_bytes = 0  # every byte handed to the transport on the current connection
        self._lost_reason = ""
        self._live = False
        self._base_ts: int | None = None
        self._min_ts = 0  # program ms: media before it is skipped (set when moved to another feed)
        self.sent = SentMeter()  # bitrate and keyframe interval of what this destination wrote
        self.last_ts = -1  # program ms of the latest message written on this connection
        self._dropping = False
        self._stream_id = 1
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.ctx = {"tenant_id": tenant_id, "event_id": event_id, "output_id": spec.id}

    @property
    def state(self) -> OutputState:
        return self.machine.state

    # --- lifecycle ---

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop for good; a live stream is unpublished first so the platform ends it cleanly."""
        self._stopping = True
        effects = self.machine.handle(sm.Stop(time.monotonic()))
        if any(isinstance(e, sm.Disconnect) and e.unpublish for e in effects):
            await self._unpublish()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._apply(effects)
        self._close_transport()

    async def _run(self) -> None:
        m = self.machine
        if self.spec.auto_disabled:
            self._apply(m.handle(sm.Disable(time.monotonic(), self.spec.auto_disabled)))
            return
        self._apply(m.handle(sm.Start(time.monotonic())))
        while not self._stopping:
            if m.state is OutputState.CONNECTING:
                await self._attempt()
            elif m.state in (OutputState.BACKOFF, OutputState.REJECTED):
                await asyncio.sleep(max(0.0, m.retry_at - time.monotonic()))
                self._apply(m.handle(sm.RetryDue(time.monotonic())))
            else:
                return  # disabled: off until re-enabled through the API (a new destination)

    def _apply(self, effects: list[sm.Effect]) -> None:
        for effect in effects:
            if isinstance(effect, sm.StateChanged):
                log.info(
                    "output.state",
                    extra={
                        **self.ctx,
                        "old": effect.old.value,
                        "new": effect.new.value,
                        "reason": effect.reason,
                        "error": self.machine.last_error if effect.new is not OutputState.LIVE else "",
                    },
                )
                if effect.new is OutputState.DISABLED:
                    log.warning(
                        "output.auto_disabled", extra={**self.ctx, "reason": self.machine.disabled_reason}
                    )
                self._on_status(self.status())
            elif isinstance(effect, sm.Attach):
                self._live = True
                self._program.attach(self)
            elif isinstance(effect, sm.Disconnect):
                self._live = False
                self._program.detach(self)
                self._close_transport()

    def _fail(self, error: str, rejected: bool = False) -> None:
        if self._stopping:
            return  # the connection ends because we are stopping: not a failure
        error = self._scrub(error)
        log.warning(
            "output.failed",
            extra={**self.ctx, "error": error, "rejected": rejected, "url": self.safe_url},
        )
        self._apply(self.machine.handle(sm.Failed(time.monotonic(), error, rejected, self._rand())))

    async def _attempt(self) -> None:
        try:
            async with self._gate.slot(self.policy.priority):
                await self._connect_and_publish()
        except DestinationRejected as exc:
            self._fail(f"destination refused the publish: {exc}", rejected=True)
            return
        except _TLS_TRANSPORT_ERRORS as exc:
            self._fail(f"{type(exc).__name__}: {exc}")
            return
        except ssl.SSLError as exc:  # a certificate or TLS setup the destination will not accept
            self._fail(f"TLS failed: {exc}", rejected=True)
            return
        except _NETWORK_ERRORS as exc:
            self._fail(_describe(exc, f"no answer within {self.policy.stall_limit_s:g} s"))
            return
        except Exception as exc:  # a bug must not leave the output stuck in connecting
            log.exception("output.attempt_crashed", extra=self.ctx)
            self._fail(f"internal error: {type(exc).__name__}")
            return
        if self._stopping:
            return
        self._apply(self.machine.handle(sm.Published(time.monotonic())))
        try:
            await self._read_loop()
        except DestinationRejected as exc:
            self._fail(f"destination ended the publish: {exc}", rejected=True)
        except (*_NETWORK_ERRORS, ssl.SSLError) as exc:
            # a TimeoutError here is the kernel's TCP_USER_TIMEOUT: sent data went unacknowledged
            user_timeout_s = USER_TIMEOUT_STALLS * self.policy.stall_limit_s
            kernel = f"destination stalled: nothing acknowledged by TCP for {user_timeout_s:g} s"
            self._fail(self._lost_reason or _describe(exc, kernel))
        except Exception as exc:
            log.exception("output.read_crashed", extra=self.ctx)
            self._fail(f"internal error: {type(exc).__name__}")

    # --- connection ---

    async def _connect_and_publish(self) -> None:
        try:
            prepared = await secure_connect.prepare(self.target, self._resolve_key, self._allowlist)
        except secure_connect.Refused as exc:
            raise DestinationRejected(str(exc)) from None
        t, p = prepared.target, self.policy
        self._key = prepared.key or self._key
        tls: ssl.SSLContext | None = None
        if t.scheme == "rtmps":
            tls = ssl.create_default_context()
            if self._ca_file:
                tls.load_verify_locations(cafile=self._ca_file)
        rate = self._program.facts().bitrate_bps // 8
        window = policies.ack_window(p, rate)
        self._high, self._low = policies.queue_limits(p, rate)
        async with asyncio.timeout(p.stall_limit_s):
            reader, writer = await asyncio.open_connection(
                prepared.address, t.port, ssl=tls, server_hostname=t.host if tls else None, limit=256 * 1024
            )
            self._writer, self._reader, self._transport = writer, reader, writer.transport
            _tune_socket(writer, p.stall_limit_s)
            session = ClientSession(
                app=t.app,
                stream_name=t.stream_name,
                tc_url=t.tc_url,
                chunk_size_out=CHUNK_SIZE,
                window_ack_size=window,
            )
            self._session = session
            self._conn_bytes = 0
            self._lost_reason = ""
            session.initiate()
            self._send_raw(session.data_to_send())
            while True:
                data = await reader.read(65536)
                if not data:
                    if session.state is ClientState.PUBLISH_SENT:
                        raise DestinationRejected(
                            "the destination closed the connection in answer to publish "
                            "(stream key refused, or the stream name is in use)"
                        )
                    raise ConnectionResetError(
                        f"destination closed the connection while {session.state.value.replace('_', ' ')}"
                    )
                session.receive_data(data)
                self._send_raw(session.data_to_send())
                while (event := session.next_event()) is not None:
                    if isinstance(event, Published):
                        self._stream_id = session.stream_id
                        self._base_ts = None
                        self._dropping = False
                        self._liveness = Liveness(p.stall_limit_s, window, time.monotonic())
                        return
                    if isinstance(event, Rejected):
                        raise DestinationRejected(f"{event.code}: {event.description}"[:300])

    async def _read_loop(self) -> None:
        assert self._session is not None and self._reader is not None
        session, reader = self._session, self._reader
        while True:
            data = await reader.read(65536)
            if not data:
                raise ConnectionResetError(self._lost_reason or "destination closed the connection")
            session.receive_data(data)
            self._send_raw(session.data_to_send())
            while (event := session.next_event()) is not None:
                if isinstance(event, Rejected) or (
                    isinstance(event, StatusReceived) and event.level == "error"
                ):
                    raise DestinationRejected(f"{event.code}: {event.description}"[:300])
                if isinstance(event, Acknowledged) and self._liveness is not None:
                    self._liveness.on_ack(event.sequence, self._conn_bytes)

    def _send_raw(self, data: bytes) -> None:
        if data and self._writer is not None:
            self._writer.write(data)
            self._conn_bytes += len(data)

    async def _unpublish(self) -> None:
        writer, session = self._writer, self._session
        if writer is None or session is None:
            return
        with contextlib.suppress(Exception):
            session.unpublish()
            writer.write(session.data_to_send())
            async with asyncio.timeout(3):
                await writer.drain()
            log.info("output.unpublished", extra=self.ctx)

    def _close_transport(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._writer = self._reader = self._transport = None
        self._session = None
        self._liveness = None

    # --- each second, from the service ---

    def tick(self, now: float) -> None:
        """Refresh class warnings and queue limits from the program; drop a connection gone silent."""
        facts = self._program.facts()
        self.warnings = policies.violations(self.policy, facts)
        self._high, self._low = policies.queue_limits(self.policy, facts.bitrate_bps // 8)
        writer, liveness, session = self._writer, self._liveness, self._session
        if not self._live or writer is None or liveness is None or session is None:
            return
        window = policies.ack_window(self.policy, facts.bitrate_bps // 8)
        if not window / 2 <= liveness.window <= window * 2:  # the bitrate moved: ask for a fitting window
            session.set_window_ack_size(window)
            self._send_raw(session.data_to_send())
            liveness.window = window
        queued = writer.transport.get_write_buffer_size()
        verdict = liveness.check(now, self._conn_bytes, queued, _kernel_unacked(writer))
        if verdict is not None:
            self._lost_reason = f"destination stalled: {verdict}"
            log.warning("output.stalled", extra={**self.ctx, "verdict": verdict})
            writer.transport.abort()

    def status(self) -> OutputStatus:
        writer = self._writer
        queued = writer.transport.get_write_buffer_size() if writer is not None and self._live else 0
        if self._live:
            self.sent.sample(time.monotonic(), self._conn_bytes)
        sent = self.sent.facts() if self._live else ProgramFacts()
        return output_status(
            tenant_id=self.tenant_id,
            event_id=self.event_id,
            spec=self.spec,
            machine=self.machine,
            policy=self.policy,
            worker=self._worker,
            wall_offset=self._wall_offset,
            bytes_sent=self.bytes_sent,
            frames_sent=self.frames_sent,
            frames_dropped=self.frames_dropped,
            drop_events=self.drop_events,
            warnings=self.warnings,
            queued_bytes=queued,
            profile=self.spec.profile,
            sent_bitrate_bps=sent.bitrate_bps,
            sent_keyframe_interval_s=sent.keyframe_interval_s,
        )

    def _scrub(self, text: str) -> str:
        """Error text from a peer or the OS can echo the URL or stream key: never let it through."""
        text = text.replace(self.spec.url, self.safe_url)
        if self._key is not None and len(self._key) >= 4:
            text = text.replace(self._key.reveal(), self._key.hint)
        key = self.target.stream_name.split("?", 1)[0]
        return text.replace(key, urls.mask_secret(key)) if len(key) >= 4 else text

    # --- media path (called synchronously by the event fan-out) ---

    def send(self, item: Prepared, header: bool = False, wire: Wire | None = None) -> None:
        """A live packet. Past the high-water mark, drop to the next keyframe that fits under the low
        one; sequence headers and metadata always go (they are small and the decoder needs them).
        ``wire`` is the fan-out pass's shared bytes for this packet (see ``write``)."""
        transport = self._transport
        if transport is None or not self._live or self._base_ts is None:
            return
        if transport.is_closing():
            return
        if header:
            # a configuration first seen after this destination started (an SRT input's audio often
            # comes just after the first keyframe, stamped a little before it) still goes, at time 0
            self.write(item, header=item.timestamp < self._base_ts)
            return
        buffered = transport.get_write_buffer_size()
        if self._dropping:
            if item.keyframe and buffered <= self._low:
                self._dropping = False
            else:
                self._count_drop(item)
                return
        elif buffered > self._high:
            self._dropping = True
            self.drop_events += 1
            log.warning(
                "output.slow_destination",
                extra={**self.ctx, "buffered": buffered, "dropped": self.frames_dropped},
            )
            self._count_drop(item)
            return
        self.write(item, wire=wire)

    def write(self, item: Prepared, header: bool = False, wire: Wire | None = None) -> None:
        """Write one message with this destination's timestamp; used for headers and the GOP replay too.

        Headers (metadata, sequence headers) go out at the destination's time zero; media from before
        the destination's first keyframe is skipped so every track starts at or after it. Destinations
        that started at the same keyframe send the same bytes: the first one to write a packet builds
        them into ``wire`` and the rest of the pass reuses them.
        """
        assert self._transport is not None and self._base_ts is not None
        if header:
            ts = 0
        elif item.timestamp < self._base_ts or item.timestamp < self._min_ts:
            return
        else:
            ts = item.timestamp - self._base_ts
            if item.timestamp > self.last_ts:
                self.last_ts = item.timestamp
            if item.keyframe:
                self.sent.keyframe(item.timestamp)
        if wire is None:
            data = wire_bytes(item, ts, self._stream_id)
        else:
            key = (ts, self._stream_id)
            found = wire.get(key)
            if found is None:
                found = wire[key] = wire_bytes(item, ts, self._stream_id)
            data = found
        self._transport.write(data)
        self._conn_bytes += len(data)
        self.bytes_sent += len(data)
        if item.type_id != chunk.DATA_AMF0:
            self.frames_sent += 1

    def begin(self, first_ts: int) -> None:
        self._base_ts = first_ts
        self._min_ts, self.last_ts = 0, -1
        self.sent = SentMeter()

    @property
    def live_on_connection(self) -> bool:
        """Live, started, and its connection open: it can change feed without a reconnect."""
        return self._live and self._base_ts is not None and self._writer is not None

    def switched_program(self, program: Program, from_ts: int) -> None:
        """Fed from ``program`` from now on; media before ``from_ts`` (program ms) is skipped, so the
        stream stays monotonic across the move. A destination not live yet attaches there when it is."""
        self._program = program
        self._min_ts = from_ts

    @property
    def started(self) -> bool:
        return self._base_ts is not None

    def _count_drop(self, item: Prepared) -> None:
        if item.type_id != chunk.DATA_AMF0:
            self.frames_dropped += 1


def _describe(exc: BaseException, timeout_text: str) -> str:
    if isinstance(exc, TimeoutError):
        return timeout_text
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _kernel_unacked(writer: asyncio.StreamWriter) -> int:
    """Bytes in the kernel's send queue the peer has not acknowledged yet (SIOCOUTQ); 0 if unknown."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return max(0, int.from_bytes(raw, sys.byteorder, signed=True))


def _tune_socket(writer: asyncio.StreamWriter, stall_limit_s: float) -> None:
    """Bound the kernel's share of the queue, and let the kernel report a vanished peer (half-open)
    soon: idle links are probed, and unacknowledged data times out (TCP_USER_TIMEOUT) as a backstop."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle = max(1, int(stall_limit_s / 2))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, max(1, int(stall_limit_s) - idle))
        user_timeout_ms = int(USER_TIMEOUT_STALLS * stall_limit_s * 1000)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout_ms)


def wire_bytes(item: Prepared, ts: int, stream_id: int) -> bytes:
    """The whole RTMP message for ``item`` at this destination's timestamp ``ts`` on ``stream_id``."""
    header = chunk.message_header(item.csid, item.type_id, ts, stream_id, len(item.body))
    if ts >= EXTENDED_TS and len(item.body) > CHUNK_SIZE:
        return header + _rechunk_extended(item, ts)
    return header + item.chunked


def _rechunk_extended(item: Prepared, ts: int) -> bytes:
    """Past 4.6 hours of destination time every continuation chunk repeats the extended timestamp."""
    return chunk.chunk_body(item.body, CHUNK_SIZE, item.csid, extended_timestamp=ts)
