"""RTMP/RTMPS ingest: many publishers on one port, each routed by its stream key to its event's input.

A thin asyncio shell over ``shared.rtmp.ServerSession``: it pumps bytes, asks the key directory at
publish time, and turns FLV tags into MediaPackets on the input's subject. Malformed input closes that
connection only, and is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time

import msgspec
from nats.aio.client import Client

from shared import subjects
from shared.flv import FlvDemuxer, UnsupportedCodec
from shared.messages import InputHealth, MediaPacket, SessionEvent, encode_packet
from shared.rtmp import chunk
from shared.rtmp.errors import ProtocolError
from shared.rtmp.server_session import (
    MediaReceived,
    PlayRequested,
    PublishRequested,
    ServerSession,
    Unpublished,
)

from .keys import KeyDirectory, Route, stream_key_from_name
from .reporter import IngestReporter
from .stats import InputStats

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT_S = 10.0
IDLE_TIMEOUT_S = 20.0
READ_SIZE = 256 * 1024


class PublishSession:
    """One accepted publisher: its route, demuxer and health counters."""

    def __init__(self, conn: RtmpConnection, route: Route) -> None:
        self.conn = conn
        self.route = route
        self.demuxer = FlvDemuxer(source=route.input_id)
        self.stats = InputStats()
        self.since = time.time()
        self.seq = 0
        self.subject = subjects.input_media(route.tenant_id, route.event_id, route.input_id)
        self.warned_codecs: set[str] = set()

    def health(self, connected: bool, now: float) -> InputHealth:
        d = self.demuxer
        return InputHealth(
            tenant_id=self.route.tenant_id,
            event_id=self.route.event_id,
            input_id=self.route.input_id,
            connected=connected,
            protocol="rtmp",
            remote=self.conn.remote,
            bitrate_bps=self.stats.bitrate_bps(now) if connected else 0,
            fps=self.stats.fps(now) if connected else 0.0,
            keyframe_interval_s=self.stats.keyframe_interval_s,
            video_codec=self.stats.video_codec,
            audio_codec=self.stats.audio_codec,
            width=getattr(d, "width", 0) or 0,
            height=getattr(d, "height", 0) or 0,
            audio_sample_rate=getattr(d, "audio_sample_rate", 0) or 0,
            connected_since=self.since,
            packets=self.stats.packets,
            ts=time.time(),
        )


class RtmpConnection:
    def __init__(
        self, server: RtmpIngest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.remote = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.session = ServerSession()
        self.publish: PublishSession | None = None
        self.opened = time.monotonic()
        self.last_rx = self.opened
        self.closing = False

    async def run(self) -> None:
        try:
            while not self.closing:
                data = await self.reader.read(READ_SIZE)
                if not data:
                    break
                now_ns = time.time_ns()
                self.last_rx = time.monotonic()
                self.session.receive_data(data)
                await self._handle_events(now_ns)
                self._flush()
        except ProtocolError as exc:
            self.server.counters["protocol_errors"] += 1
            log.warning("ingest.protocol_error", extra={"remote": self.remote, "error": str(exc)})
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            log.info("ingest.connection_lost", extra={"remote": self.remote, "error": repr(exc)})
        except asyncio.CancelledError:
            raise
        except Exception:
            self.server.counters["internal_errors"] += 1
            log.exception("ingest.connection_crashed", extra={"remote": self.remote})
        finally:
            await self._close()

    def _flush(self) -> None:
        out = self.session.data_to_send()
        if out:
            self.writer.write(out)

    async def _handle_events(self, now_ns: int) -> None:
        while (event := self.session.next_event()) is not None:
            if isinstance(event, MediaReceived):
                if self.publish is not None:
                    await self._on_media(self.publish, event, now_ns)
            elif isinstance(event, PublishRequested):
                await self._on_publish(event)
            elif isinstance(event, Unpublished):
                log.info("ingest.unpublished", extra=self._ctx())
                self.closing = True
            elif isinstance(event, PlayRequested):
                self.session.reject_play("Fanout ingest accepts publishers only")
                self._flush()
                self.closing = True

    async def _on_publish(self, event: PublishRequested) -> None:
        route = self.server.keys.lookup(stream_key_from_name(event.stream_name), "rtmp")
        if route is None or self.publish is not None:
            reason = "unknown or stopped stream key" if route is None else "already publishing"
            self.server.counters["refused"] += 1
            log.warning("ingest.publish_refused", extra={"remote": self.remote, "reason": reason})
            self.session.reject_publish("NetStream.Publish.BadName", f"publish refused: {reason}")
            self._flush()
            await self.server.emit_session(
                SessionEvent(action="refused", reason=reason, remote=self.remote, ts=time.time())
            )
            self.closing = True
            return
        await self.server.take_over(route)
        self.publish = PublishSession(self, route)
        self.server.publishers[route.input_id] = self
        self.session.accept_publish()
        self._flush()
        self.server.counters["accepted"] += 1
        log.info("ingest.publish_accepted", extra=self._ctx())
        await self.server.emit_session(
            SessionEvent(
                action="accepted",
                tenant_id=route.tenant_id,
                event_id=route.event_id,
                input_id=route.input_id,
                remote=self.remote,
                ts=time.time(),
            )
        )

    async def _on_media(self, pub: PublishSession, event: MediaReceived, now_ns: int) -> None:
        try:
            if event.type_id == chunk.VIDEO:
                packet = pub.demuxer.on_video(event.timestamp, event.payload, recv_ns=now_ns)
            elif event.type_id == chunk.AUDIO:
                packet = pub.demuxer.on_audio(event.timestamp, event.payload, recv_ns=now_ns)
            elif event.type_id == chunk.DATA_AMF0:
                packet = pub.demuxer.on_data(event.timestamp, event.payload)
            else:
                return
        except UnsupportedCodec as exc:
            if str(exc) not in pub.warned_codecs:
                pub.warned_codecs.add(str(exc))
                log.warning("ingest.unsupported_codec", extra={**self._ctx(), "error": str(exc)})
            return
        except ValueError as exc:
            self.server.counters["bad_media"] += 1
            log.warning("ingest.bad_media", extra={**self._ctx(), "error": str(exc)})
            return
        if packet is None:
            return
        pub.seq += 1
        packet = _with_seq(packet, pub.seq)
        pub.stats.on_packet(packet, time.monotonic())
        await self.server.nc.publish(pub.subject, encode_packet(packet))

    def _ctx(self) -> dict[str, str]:
        if self.publish is None:
            return {"remote": self.remote}
        r = self.publish.route
        return {
            "remote": self.remote,
            "tenant_id": r.tenant_id,
            "event_id": r.event_id,
            "input_id": r.input_id,
        }

    def close_soon(self) -> None:
        self.closing = True
        with contextlib.suppress(Exception):
            self.writer.close()

    async def _close(self) -> None:
        self.closing = True
        with contextlib.suppress(Exception):
            self.writer.close()
        pub = self.publish
        if pub is not None:
            if self.server.publishers.get(pub.route.input_id) is self:
                del self.server.publishers[pub.route.input_id]
            await self.server.emit_health(pub.health(False, time.monotonic()))
            await self.server.emit_session(
                SessionEvent(
                    action="closed",
                    tenant_id=pub.route.tenant_id,
                    event_id=pub.route.event_id,
                    input_id=pub.route.input_id,
                    remote=self.remote,
                    ts=time.time(),
                )
            )
            log.info("ingest.publish_closed", extra=self._ctx())


def _with_seq(packet: MediaPacket, seq: int) -> MediaPacket:
    return msgspec.structs.replace(packet, seq=seq)


class RtmpIngest(IngestReporter):
    def __init__(self, nc: Client, keys: KeyDirectory, worker: str = "ingest") -> None:
        super().__init__(nc, worker)
        self.keys = keys
        self.connections: set[RtmpConnection] = set()
        self.publishers: dict[str, RtmpConnection] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        server = await asyncio.start_server(self._on_client, host, port, ssl=ssl_context, limit=READ_SIZE)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()[1]
        log.info("ingest.listening", extra={"port": bound, "tls": ssl_context is not None})
        return int(bound)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = RtmpConnection(self, reader, writer)
        self.connections.add(conn)
        self.counters["connections"] += 1
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

    async def take_over(self, route: Route) -> None:
        """A new publisher for an input replaces a stale one (an encoder reconnecting after a blip)."""
        old = self.publishers.pop(route.input_id, None)
        if old is not None:
            log.info("ingest.publisher_replaced", extra={"input_id": route.input_id, "remote": old.remote})
            old.close_soon()

    def revalidate(self) -> None:
        """Close publishers whose key no longer routes (event stopped, input deleted)."""
        for conn in list(self.publishers.values()):
            if conn.publish is not None and not self.keys.is_current(conn.publish.route):
                log.info("ingest.publisher_dropped", extra=conn._ctx())
                conn.close_soon()

    async def housekeeping(self) -> None:
        """Each second: publish input health, and close connections stuck in handshake or idle."""
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self.connections):
                limit = IDLE_TIMEOUT_S if conn.publish is not None else HANDSHAKE_TIMEOUT_S
                if now - conn.last_rx > limit:
                    self.counters["timeouts"] += 1
                    log.info("ingest.timeout", extra=conn._ctx())
                    conn.close_soon()
            for conn in list(self.publishers.values()):
                if conn.publish is not None:
                    await self.emit_health(conn.publish.health(True, now))
            await self.emit_stats(len(self.publishers))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.close_soon()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
