"""One RTMP/RTMPS destination: connect, publish, write shared bytes, reconnect with backoff.

The asyncio shell around ``shared.rtmp.ClientSession``. Media is written straight into the transport
from the event's fan-out (no task switch per packet); the transport's buffer is the destination's
bounded queue: past ``HIGH_WATER`` bytes the destination drops to the next keyframe and counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable

from shared import urls
from shared.messages import OutputSpec, OutputStatus
from shared.rtmp import chunk
from shared.rtmp.client_session import Acknowledged, ClientSession, Published, Rejected, StatusReceived
from shared.rtmp.errors import ProtocolError

from .prepared import CHUNK_SIZE, Prepared
from .state import OutputState, backoff_delay, check_transition

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
HIGH_WATER = 4 * 1024 * 1024
LOW_WATER = 1 * 1024 * 1024
STALL_LIMIT_S = 10.0
EXTENDED_TS = 0xFFFFFF


class DestinationRejected(Exception):
    pass


class RtmpDestination:
    def __init__(
        self,
        tenant_id: str,
        event_id: str,
        spec: OutputSpec,
        attach: Callable[[RtmpDestination], None],
        detach: Callable[[RtmpDestination], None],
        on_status: Callable[[OutputStatus], None],
        worker: str,
        ca_file: str | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.event_id = event_id
        self.spec = spec
        self.target = urls.parse_destination_url(spec.url)
        self.safe_url = urls.sanitize(spec.url)
        self._attach = attach
        self._detach = detach
        self._on_status = on_status
        self._worker = worker
        self._ca_file = ca_file
        self.state = OutputState.IDLE
        self.state_since = time.time()
        self.reason = ""
        self.last_error = ""
        self.bytes_sent = 0
        self.frames_sent = 0
        self.frames_dropped = 0
        self.connects = 0
        self.failures = 0
        self.acked_bytes = 0
        self._writer: asyncio.StreamWriter | None = None
        self._session: ClientSession | None = None
        self._base_ts: int | None = None
        self._dropping = False
        self._stream_id = 1
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_buffer = 0
        self._stall_since: float | None = None
        self.ctx = {"tenant_id": tenant_id, "event_id": event_id, "output_id": spec.id}

    # --- lifecycle ---

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stopping.set()
        await self._unpublish()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._set_state(OutputState.STOPPED, "stopped")

    def _scrub(self, text: str) -> str:
        """Error text from a peer or the OS can echo the URL or stream key: never let it through."""
        text = text.replace(self.spec.url, self.safe_url)
        key = self.target.stream_name.split("?", 1)[0]
        return text.replace(key, urls.mask_secret(key)) if len(key) >= 4 else text

    def _set_state(self, new: OutputState, reason: str) -> None:
        if new is self.state:
            return
        try:
            check_transition(self.state, new)
        except ValueError:
            log.error("output.bad_transition", extra={**self.ctx, "old": self.state.value, "new": new.value})
            return
        log.info(
            "output.state", extra={**self.ctx, "old": self.state.value, "new": new.value, "reason": reason}
        )
        self.state = new
        self.state_since = time.time()
        self.reason = reason
        self._on_status(self.status())

    def status(self) -> OutputStatus:
        return OutputStatus(
            tenant_id=self.tenant_id,
            event_id=self.event_id,
            output_id=self.spec.id,
            state=self.state.value,
            reason=self.reason,
            last_error=self.last_error,
            bytes_sent=self.bytes_sent,
            frames_sent=self.frames_sent,
            frames_dropped=self.frames_dropped,
            connects=self.connects,
            failures=self.failures,
            state_since=self.state_since,
            worker=self._worker,
            ts=time.time(),
        )

    async def _run(self) -> None:
        while not self._stopping.is_set():
            self._set_state(OutputState.CONNECTING, "connect")
            rejected = False
            try:
                await self._connect_and_publish()
                self.connects += 1
                self.failures = 0
                self._set_state(OutputState.LIVE, "published")
                self._attach(self)
                await self._read_loop()
                self.last_error = "destination closed the connection"
            except asyncio.CancelledError:
                raise
            except DestinationRejected as exc:
                rejected = True
                self.last_error = str(exc)
            except (OSError, ssl.SSLError, ProtocolError, TimeoutError, asyncio.IncompleteReadError) as exc:
                self.last_error = self._scrub(f"{type(exc).__name__}: {exc}")
            finally:
                self._detach(self)
                self._close_transport()
            if self._stopping.is_set():
                return
            self.failures += 1
            log.warning("output.failed", extra={**self.ctx, "error": self.last_error, "url": self.safe_url})
            if rejected:
                self._set_state(OutputState.REJECTED, "destination refused the publish")
                delay = backoff_delay(self.failures, first=5.0, cap=60.0, jitter=random.random())
            else:
                self._set_state(OutputState.BACKOFF, "connection failed")
                delay = backoff_delay(self.failures, first=1.0, cap=30.0, jitter=random.random())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _connect_and_publish(self) -> None:
        t = self.target
        tls: ssl.SSLContext | None = None
        if t.scheme == "rtmps":
            tls = ssl.create_default_context()
            if self._ca_file:
                tls.load_verify_locations(cafile=self._ca_file)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(
                t.host, t.port, ssl=tls, server_hostname=t.host if tls else None, limit=256 * 1024
            )
            self._writer = writer
            self._reader = reader
            session = ClientSession(
                app=t.app, stream_name=t.stream_name, tc_url=t.tc_url, chunk_size_out=CHUNK_SIZE
            )
            self._session = session
            session.initiate()
            writer.write(session.data_to_send())
            while True:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionResetError("destination closed the connection during publish")
                session.receive_data(data)
                out = session.data_to_send()
                if out:
                    writer.write(out)
                while (event := session.next_event()) is not None:
                    if isinstance(event, Published):
                        self._stream_id = session.stream_id
                        self._base_ts = None
                        self._dropping = False
                        return
                    if isinstance(event, Rejected):
                        raise DestinationRejected(self._scrub(f"{event.code}: {event.description}"[:300]))

    async def _read_loop(self) -> None:
        assert self._session is not None and self._writer is not None
        session, writer = self._session, self._writer
        while True:
            data = await self._reader.read(65536)
            if not data:
                return
            session.receive_data(data)
            out = session.data_to_send()
            if out:
                writer.write(out)
            while (event := session.next_event()) is not None:
                if isinstance(event, Rejected) or (isinstance(event, StatusReceived) and event.level == "error"):
                    raise DestinationRejected(self._scrub(f"{event.code}: {event.description}"[:300]))
                if isinstance(event, Acknowledged):
                    self.acked_bytes = event.sequence

    async def _unpublish(self) -> None:
        writer, session = self._writer, self._session
        if writer is None or session is None or self.state is not OutputState.LIVE:
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
        self._writer = None
        self._session = None

    # --- media path (called synchronously by the event fan-out) ---

    def send(self, item: Prepared) -> None:
        writer = self._writer
        if writer is None or self.state is not OutputState.LIVE:
            return
        transport = writer.transport
        if transport.is_closing():
            return
        if self._base_ts is None:
            return
        buffered = transport.get_write_buffer_size()
        if self._dropping:
            if item.keyframe and buffered <= LOW_WATER:
                self._dropping = False
            else:
                self._count_drop(item)
                return
        elif buffered > HIGH_WATER:
            self._dropping = True
            log.warning("output.slow_destination", extra={**self.ctx, "buffered": buffered})
            self._count_drop(item)
            return
        self.write(item)

    def write(self, item: Prepared, header: bool = False) -> None:
        """Write one message with this destination's timestamp; used for headers and the GOP replay too.

        Headers (metadata, sequence headers) go out at the destination's time zero; media from before
        the destination's first keyframe is skipped so every track starts at or after it.
        """
        assert self._writer is not None and self._base_ts is not None
        if header:
            ts = 0
        elif item.timestamp < self._base_ts:
            return
        else:
            ts = item.timestamp - self._base_ts
        header_bytes = chunk.message_header(item.csid, item.type_id, ts, self._stream_id, len(item.body))
        if ts >= EXTENDED_TS and len(item.body) > CHUNK_SIZE:
            body = _rechunk_extended(item, ts)
        else:
            body = item.chunked
        data = header_bytes + body
        self._writer.write(data)
        self.bytes_sent += len(data)
        if item.type_id != chunk.DATA_AMF0:
            self.frames_sent += 1

    def begin(self, first_ts: int) -> None:
        self._base_ts = first_ts

    @property
    def started(self) -> bool:
        return self._base_ts is not None

    def _count_drop(self, item: Prepared) -> None:
        if item.type_id != chunk.DATA_AMF0:
            self.frames_dropped += 1

    def check_stall(self, now: float) -> None:
        """A write that makes no progress for the stall limit ends the connection (reconnect)."""
        writer = self._writer
        if writer is None or self.state is not OutputState.LIVE:
            self._stall_since = None
            return
        buffered = writer.transport.get_write_buffer_size()
        if buffered == 0 or buffered < self._last_buffer:
            self._stall_since = None
        elif self._stall_since is None:
            self._stall_since = now
        elif now - self._stall_since > STALL_LIMIT_S:
            log.warning("output.stalled", extra={**self.ctx, "buffered": buffered})
            self.last_error = f"destination stalled: no write progress for {STALL_LIMIT_S:.0f}s"
            self._stall_since = None
            writer.transport.abort()
        self._last_buffer = buffered


def _rechunk_extended(item: Prepared, ts: int) -> bytes:
    """Past 4.6 hours of destination time every continuation chunk repeats the extended timestamp."""
    return chunk.chunk_body(item.body, CHUNK_SIZE, item.csid, extended_timestamp=ts)
