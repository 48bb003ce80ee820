"""Transcode service: one encode per (event, profile) that an enabled output of a live event needs.

Watches desired state. For each live event whose enabled outputs name encoding profiles it subscribes
to the event's program and runs an ``EventTranscoder`` in a worker thread (PyAV blocks): packets go in
through a bounded queue, renditions come back to the event loop and are published on
``subjects.rendition_media``. When no output needs a profile its encoder stops; when no profile of an
event is needed the subscription and thread go. Worker stats each second say which encoders run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from shared import subjects
from shared.desired import DesiredState
from shared.messages import EventSpec, MediaPacket, WorkerStats, decode_packet, encode, encode_packet
from shared.service import ServiceContext

from . import profiles
from .engine import EventTranscoder
from .profiles import Profile

log = logging.getLogger(__name__)

QUEUE_PACKETS = 900  # about 15 s of a 30 fps program with audio: beyond it the encode cannot keep up
_STOP = object()


def needed_profiles(spec: EventSpec | None) -> tuple[Profile, ...]:
    """The encoding profiles the enabled outputs of a live event name (definitions from the spec)."""
    if spec is None or spec.state != "live":
        return ()
    names = {o.profile for o in spec.outputs if o.enabled and o.profile != profiles.PASSTHROUGH}
    return tuple(p for p in spec.profiles if p.name in names)


class EventEncode:
    """The program of one event in, its renditions out. The encoder lives in its own thread."""

    def __init__(self, nc: Client, tenant_id: str, event_id: str, wanted: tuple[Profile, ...]) -> None:
        self._nc = nc
        self.tenant_id = tenant_id
        self.event_id = event_id
        self.wanted = wanted
        self.running: tuple[str, ...] = ()  # profiles with an open encoder (set by the thread)
        self.dropped = 0
        self.published = 0
        self.decode_errors = 0
        self._in: queue.Queue[object] = queue.Queue(QUEUE_PACKETS)
        self._skip_to_keyframe = False
        self._sub: Subscription | None = None
        self._loop = asyncio.get_running_loop()
        self._out: asyncio.Queue[tuple[str, MediaPacket] | None] = asyncio.Queue()
        self._thread = threading.Thread(target=self._work, name=f"transcode-{event_id}", daemon=True)
        self._publisher: asyncio.Task[None] | None = None
        self.ctx = {"tenant_id": tenant_id, "event_id": event_id}

    async def start(self) -> None:
        self._thread.start()
        self._publisher = asyncio.ensure_future(self._publish())
        self._sub = await self._nc.subscribe(
            subjects.program_media(self.tenant_id, self.event_id),
            cb=self._on_msg,
            pending_msgs_limit=20_000,
            pending_bytes_limit=256 * 1024 * 1024,
        )
        log.info("transcode.started", extra={**self.ctx, "profiles": [p.name for p in self.wanted]})

    def set_profiles(self, wanted: tuple[Profile, ...]) -> None:
        self.wanted = wanted
        self._put(("profiles", wanted))

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        self._in.put(_STOP)
        await asyncio.to_thread(self._thread.join, 10)
        if self._publisher is not None:
            self._out.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._publisher, 5)
        log.info("transcode.stopped", extra=self.ctx)

    def _put(self, item: object) -> None:
        while True:
            try:
                self._in.put_nowait(item)
                return
            except queue.Full:  # control items must get through: make room
                with contextlib.suppress(queue.Empty):
                    self._in.get_nowait()
                    self.dropped += 1

    async def _on_msg(self, msg: Msg) -> None:
        try:
            packet = decode_packet(msg.data)
        except Exception:
            return
        if self._skip_to_keyframe:
            if not (packet.kind == "video" and packet.keyframe):
                self.dropped += 1
                return
            self._skip_to_keyframe = False
        try:
            self._in.put_nowait(packet)
        except queue.Full:  # the encode falls behind: drop to the next keyframe rather than grow
            self.dropped += 1
            self._skip_to_keyframe = True
            log.warning("transcode.behind", extra={**self.ctx, "queued": self._in.qsize()})

    def _work(self) -> None:
        transcoder = EventTranscoder(self.wanted)
        while True:
            item = self._in.get()
            if item is _STOP:
                return
            if isinstance(item, tuple):
                transcoder.set_profiles(item[1])
                continue
            assert isinstance(item, MediaPacket)
            try:
                out = transcoder.feed(item)
            except Exception as exc:  # one broken packet must not end the event's renditions
                log.warning("transcode.error", extra={**self.ctx, "error": str(exc)})
                continue
            self.running = tuple(transcoder.running_profiles())
            self.decode_errors = transcoder.counters.decode_errors
            if out:
                self._loop.call_soon_threadsafe(self._deliver, out)

    def _deliver(self, out: list[tuple[str, MediaPacket]]) -> None:
        for item in out:
            self._out.put_nowait(item)

    async def _publish(self) -> None:
        while True:
            item = await self._out.get()
            if item is None:
                return
            name, packet = item
            with contextlib.suppress(Exception):
                await self._nc.publish(
                    subjects.rendition_media(self.tenant_id, self.event_id, name), encode_packet(packet)
                )
                self.published += 1


class TranscodeService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self.encodes: dict[str, EventEncode] = {}

    async def on_change(self, event_id: str, old: EventSpec | None, new: EventSpec | None) -> None:
        wanted = needed_profiles(new)
        current = self.encodes.get(event_id)
        if not wanted:
            if current is not None:
                del self.encodes[event_id]
                await current.stop()
            return
        assert new is not None
        if current is None:
            current = EventEncode(self._ctx.nc, new.tenant_id, event_id, wanted)
            self.encodes[event_id] = current
            await current.start()
        elif current.wanted != wanted:
            log.info("transcode.profiles", extra={**current.ctx, "profiles": [p.name for p in wanted]})
            current.set_profiles(wanted)

    def worker_stats(self) -> WorkerStats:
        counters: dict[str, int] = {}
        for enc in self.encodes.values():
            for name in enc.running:
                counters[f"encoder.{enc.event_id}.{name}"] = 1
        encoders = len(counters)
        counters["encoders"] = encoders
        counters["dropped"] = sum(e.dropped for e in self.encodes.values())
        counters["decode_errors"] = sum(e.decode_errors for e in self.encodes.values())
        counters["published"] = sum(e.published for e in self.encodes.values())
        return WorkerStats(
            service="transcode", worker=self._ctx.settings.worker_id, ts=time.time(), counters=counters
        )

    async def stats_loop(self) -> None:
        subject = subjects.worker_stats("transcode", self._ctx.settings.worker_id)
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(Exception):
                await self._ctx.nc.publish(subject, encode(self.worker_stats()))

    async def close(self) -> None:
        for enc in list(self.encodes.values()):
            with contextlib.suppress(Exception):
                await enc.stop()
        self.encodes.clear()


async def main(ctx: ServiceContext) -> None:
    service = TranscodeService(ctx)
    desired = DesiredState(ctx.nc, service.on_change)
    ctx.stack.push_async_callback(service.close)
    ctx.spawn(desired.run(), "desired-watch")
    ctx.spawn(service.stats_loop(), "stats")
