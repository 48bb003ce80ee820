"""SRT ingest: many callers on one UDP port, each routed by its stream id to its event's input.

The listener's hook (``srt_access.admit``) decides during the handshake, on libsrt's thread, and gives
an accepted caller its input's passphrase (from the vault, held ahead by ``InputSecrets``) and latency,
so a wrong passphrase fails the handshake too. Accepted connections are drained by the ``SrtPoller`` (a
paced poll on the event loop) into one bounded inbox each; a task per connection demuxes the MPEG-TS
into MediaPackets on the input's subject, exactly like RTMP ingest.
Each second every connection's ``srt_bistats`` becomes an ``InputHealth`` with transport figures and a
degraded verdict. Nothing here logs a stream id or a passphrase.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec
from nats.aio.client import Client

from shared import subjects
from shared.messages import InputHealth, MediaPacket, SessionEvent, encode_packet
from shared.mpegts.demux import TsDemuxer
from shared.srt import lib as L
from shared.srt import liblog
from shared.srt.poller import Inbox, SrtPoller
from shared.srt.socket import HookAnswer, Options, SrtError, SrtSocket
from shared.srt.stats import LinkJudge, TransportCounters

from .input_secrets import InputSecrets
from .keys import KeyDirectory, Route
from .reporter import IngestReporter
from .srt_access import Throttle, admit
from .stats import InputStats

log = logging.getLogger(__name__)

IDLE_TIMEOUT_S = 20.0  # connected but no media for this long: close
IDLE_FLUSH_S = 0.25  # no message for this long: hand over the frame still open (the stream paused or ended)
PENDING_TTL_S = 30.0  # a handshake the hook accepted but libsrt never completed is forgotten after this
DEFAULT_LATENCY_MS = 120


@dataclass(frozen=True)
class _Pending:
    route: Route
    remote: str
    at: float


class SrtPublishSession:
    """One accepted caller: its socket, demuxer, media counters and transport statistics."""

    def __init__(self, server: SrtIngest, sock: SrtSocket, remote: str, route: Route) -> None:
        self.server = server
        self.sock = sock
        self.remote = remote
        self.route = route
        self.inbox = Inbox(asyncio.get_running_loop())
        self.demuxer = TsDemuxer(source=route.input_id)
        self.stats = InputStats()
        self.transport = TransportCounters("receiver")
        self.judge = LinkJudge()
        self.since = time.time()
        self.last_media = time.monotonic()
        self.seq = 0
        self.subject = subjects.input_media(route.tenant_id, route.event_id, route.input_id)
        self.closing = False
        self._reported_errors: Counter[str] = Counter()
        self._reported_unsupported: set[str] = set()
        self.task: asyncio.Task[None] | None = None

    def ctx(self) -> dict[str, str]:
        r = self.route
        return {
            "remote": self.remote,
            "tenant_id": r.tenant_id,
            "event_id": r.event_id,
            "input_id": r.input_id,
        }

    async def run(self) -> None:
        try:
            while True:
                batch = await self.inbox.get(idle_s=IDLE_FLUSH_S)
                if batch is None:
                    # nothing for a while: the frame the demuxer holds (an MPEG-TS video PES has no
                    # length; it ends where the next one starts) is whole, and the last one for now
                    for packet in self.demuxer.flush():
                        await self._publish(packet)
                    continue
                if not batch:
                    break
                data = batch[0] if len(batch) == 1 else b"".join(batch)  # one demuxer call per wake-up
                for packet in self.demuxer.feed(data, recv_ns=time.time_ns()):
                    await self._publish(packet)
            for packet in self.demuxer.flush():
                await self._publish(packet)
            log.info(
                "ingest.srt_disconnected", extra={**self.ctx(), "reason": self.inbox.closed_reason or ""}
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            self.server.counters["internal_errors"] += 1
            log.exception("ingest.srt_connection_crashed", extra=self.ctx())
        finally:
            await self.server.closed(self)

    async def _publish(self, packet: MediaPacket) -> None:
        self.seq += 1
        packet = msgspec.structs.replace(packet, seq=self.seq)
        self.last_media = time.monotonic()
        self.stats.on_packet(packet, self.last_media)
        await self.server.nc.publish(self.subject, encode_packet(packet))

    def sample(self, now: float) -> InputHealth:
        """This second's health: media figures, and libsrt's statistics since the last sample."""
        transport, verdict = self.transport.last, self.judge.verdict()
        try:
            transport, interval = self.transport.update(self.sock.stats(clear=True))
            verdict = self.judge.add(interval)
        except SrtError:
            pass  # the socket is going away; the last figures stand
        d = self.demuxer
        return InputHealth(
            tenant_id=self.route.tenant_id,
            event_id=self.route.event_id,
            input_id=self.route.input_id,
            connected=not self.closing,
            protocol="srt",
            remote=self.remote,
            bitrate_bps=self.stats.bitrate_bps(now),
            fps=self.stats.fps(now),
            keyframe_interval_s=self.stats.keyframe_interval_s,
            video_codec=self.stats.video_codec,
            audio_codec=self.stats.audio_codec,
            width=d.width,
            height=d.height,
            audio_sample_rate=d.audio_sample_rate,
            connected_since=self.since,
            packets=self.stats.packets,
            ts=time.time(),
            rtt_ms=transport.rtt_ms,
            send_rate_bps=transport.send_rate_bps,
            recv_rate_bps=transport.recv_rate_bps,
            pkt_loss=transport.pkt_loss,
            pkt_retrans=transport.pkt_retrans,
            pkt_drop=transport.pkt_drop,
            rcv_buffer_ms=transport.rcv_buffer_ms,
            flight_size=transport.flight_size,
            latency_ms=transport.latency_ms,
            loss_pct=verdict.loss_pct,
            degraded=verdict.degraded,
            degraded_reasons=verdict.reasons,
        )

    def report_damage(self) -> None:
        """Once a second at most: what the demuxer had to repair or skip since the last report."""
        new = self.demuxer.errors - self._reported_errors
        if new:
            self._reported_errors = Counter(self.demuxer.errors)
            self.server.counters["damaged_ts"] += sum(new.values())
            log.warning("ingest.ts_damage", extra={**self.ctx(), "counts": dict(new)})
        unsupported = self.demuxer.unsupported - self._reported_unsupported
        if unsupported:
            self._reported_unsupported |= unsupported
            log.warning("ingest.unsupported_codec", extra={**self.ctx(), "streams": sorted(unsupported)})
        if self.inbox.dropped:
            log.warning("ingest.srt_inbox_overflow", extra={**self.ctx(), "dropped": self.inbox.dropped})
            self.inbox.dropped = 0

    def close_soon(self) -> None:
        self.closing = True
        self.server.poller_unwatch(self.sock)
        self.sock.close()
        self.inbox.close("closed by ingest")


class SrtIngest(IngestReporter):
    def __init__(self, nc: Client, keys: KeyDirectory, secrets: InputSecrets, worker: str = "ingest") -> None:
        super().__init__(nc, f"{worker}-srt")
        self.keys = keys
        self.secrets = secrets
        self.sessions: set[SrtPublishSession] = set()
        self.publishers: dict[str, SrtPublishSession] = {}
        self._pending: dict[int, _Pending] = {}  # handshakes the hook accepted, by new socket id
        self._lock = threading.Lock()  # _pending and _throttle are used on libsrt's threads
        self._throttle = Throttle()
        self._listener: SrtSocket | None = None
        self._poller: SrtPoller | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def listen(self, host: str, port: int) -> int:
        self._loop = asyncio.get_running_loop()
        liblog.install(self._on_libsrt_rejection)
        sock = SrtSocket()
        sock.configure(Options(latency_ms=DEFAULT_LATENCY_MS))
        sock.bind(host, port)
        sock.set_listen_hook(self._hook)
        sock.listen(backlog=64)
        self._listener = sock
        self._poller = SrtPoller()
        self._poller.start()
        self._poller.watch_listener(sock, self._on_accept)
        bound = sock.local_port()
        log.info("ingest.srt_listening", extra={"port": bound})
        return bound

    # --- handshake (libsrt's threads) ---

    def _hook(self, ns: int, remote: str, text: str) -> HookAnswer:
        admission = admit(text, self.keys.lookup)
        if admission.route is None:
            self._refused(remote, admission.reason, None)
            return HookAnswer(False, admission.reject_code)
        route = admission.route
        passphrase = route.passphrase
        if route.credential_id:
            held = self.secrets.get(route.input_id, route.credential_id, route.credential_version)
            if held is None:  # never let a caller in unencrypted: it tries again in a moment
                self._refused(remote, "passphrase not available yet", route)
                return HookAnswer(False, L.SRT_REJX_UNAVAILABLE)
            passphrase = held.reveal()
        with self._lock:
            self._pending[ns] = _Pending(route, remote, time.monotonic())
        return HookAnswer(True, passphrase=passphrase, latency_ms=route.latency_ms or DEFAULT_LATENCY_MS)

    def _on_libsrt_rejection(self, rejection: liblog.Rejection) -> None:
        with self._lock:
            pending = self._pending.pop(rejection.socket, None)
        if pending is not None:
            self._refused(pending.remote, rejection.reason, pending.route)

    def _refused(self, remote: str, reason: str, route: Route | None) -> None:
        """Log and announce a refusal, throttled per caller address and reason; on libsrt's threads."""
        self.counters["refused"] += 1
        with self._lock:
            held_back = self._throttle.allow((remote.rpartition(":")[0], reason), time.monotonic())
        if held_back is None:
            return
        ids = {}
        if route is not None:
            ids = {"tenant_id": route.tenant_id, "event_id": route.event_id, "input_id": route.input_id}
        log.warning(
            "ingest.srt_refused", extra={"remote": remote, "reason": reason, "repeats": held_back, **ids}
        )
        event = SessionEvent(
            action="refused", reason=reason, remote=remote, protocol="srt", ts=time.time(), **ids
        )
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(lambda: self._spawn(self.emit_session(event)))

    # --- connections (event loop) ---

    def _on_accept(self, sock: SrtSocket, remote: str) -> None:
        with self._lock:
            pending = self._pending.pop(sock.handle, None)
        route = pending.route if pending is not None else None
        if route is None or not self.keys.is_current(route):
            log.info("ingest.srt_dropped_at_accept", extra={"remote": remote})
            sock.close()
            return
        self.take_over(route)
        session = SrtPublishSession(self, sock, remote, route)
        self.sessions.add(session)
        self.publishers[route.input_id] = session
        assert self._poller is not None
        self._poller.watch(sock, session.inbox)
        session.task = asyncio.ensure_future(session.run())
        self.counters["accepted"] += 1
        log.info("ingest.srt_accepted", extra={**session.ctx(), "latency_ms": route.latency_ms})
        self._spawn(
            self.emit_session(
                SessionEvent(
                    action="accepted",
                    tenant_id=route.tenant_id,
                    event_id=route.event_id,
                    input_id=route.input_id,
                    remote=remote,
                    protocol="srt",
                    ts=time.time(),
                )
            )
        )

    def take_over(self, route: Route) -> None:
        """A new caller for an input replaces the old one (an encoder reconnecting after a blip)."""
        old = self.publishers.pop(route.input_id, None)
        if old is not None:
            log.info("ingest.srt_publisher_replaced", extra=old.ctx())
            old.close_soon()

    async def closed(self, session: SrtPublishSession) -> None:
        session.closing = True
        self.sessions.discard(session)
        if self.publishers.get(session.route.input_id) is session:
            del self.publishers[session.route.input_id]
        self.poller_unwatch(session.sock)
        health = session.sample(time.monotonic())
        session.sock.close()
        await self.emit_health(msgspec.structs.replace(health, connected=False))
        r = session.route
        await self.emit_session(
            SessionEvent(
                action="closed",
                tenant_id=r.tenant_id,
                event_id=r.event_id,
                input_id=r.input_id,
                remote=session.remote,
                protocol="srt",
                ts=time.time(),
            )
        )

    def poller_unwatch(self, sock: SrtSocket) -> None:
        if self._poller is not None and not sock.closed:
            self._poller.unwatch(sock)

    def revalidate(self) -> None:
        """Close callers whose stream id no longer routes (event stopped, input deleted or changed)."""
        for session in list(self.publishers.values()):
            if not self.keys.is_current(session.route):
                log.info("ingest.srt_publisher_dropped", extra=session.ctx())
                session.close_soon()

    async def housekeeping(self) -> None:
        """Each second: transport statistics and health per connection, idle callers closed."""
        while True:
            await asyncio.sleep(1.0)
            await self.tick(time.monotonic())

    async def tick(self, now: float) -> None:
        with self._lock:
            for ns in [ns for ns, p in self._pending.items() if now - p.at > PENDING_TTL_S]:
                del self._pending[ns]
        for session in list(self.publishers.values()):
            if now - session.last_media > IDLE_TIMEOUT_S:
                self.counters["timeouts"] += 1
                log.info("ingest.srt_timeout", extra=session.ctx())
                session.close_soon()
                continue
            session.report_damage()
            await self.emit_health(session.sample(now))
        await self.emit_stats(len(self.publishers))

    async def close(self) -> None:
        liblog.remove(self._on_libsrt_rejection)
        for session in list(self.sessions):
            session.close_soon()
        tasks = [s.task for s in self.sessions if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._listener is not None:
            self._listener.close()
        if self._poller is not None:
            await self._poller.close()
