"""Per event, per process: one subscription to the program feeding every destination of the event.

Each packet is serialised once (``Preparer``) and the same bytes go to every live destination. A GOP
cache (from the last keyframe) lets a destination that goes live mid-stream start at once. The
fan-out also measures the program (bitrate, keyframe interval) for class checks and queue sizes.
"""

from __future__ import annotations

import logging
import time

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from services.transcode.profiles import PASSTHROUGH
from shared import subjects
from shared.messages import decode_packet
from shared.rtmp import chunk

from .meter import ProgramMeter
from .policy import ProgramFacts
from .prepared import Prepared, Preparer, Wire
from .rtmp_destination import RtmpDestination
from .ts_feed import TsFeed

log = logging.getLogger(__name__)

GOP_CACHE_MAX_BYTES = 32 * 1024 * 1024
LATENCY_SAMPLES_MAX = 10_000


class EventFanout:
    """One event's program, or one of its renditions (``profile`` other than passthrough)."""

    def __init__(self, nc: Client, tenant_id: str, event_id: str, profile: str = PASSTHROUGH) -> None:
        self._nc = nc
        self.tenant_id = tenant_id
        self.event_id = event_id
        self.profile = profile
        # destinations moving here from another fan-out of the event, live on the same connection: they
        # join at this feed's first keyframe past what they already sent (new sequence headers first)
        self.joining: list[tuple[RtmpDestination, EventFanout]] = []
        self._preparer = Preparer()
        self._gop: list[Prepared] = []
        self._gop_bytes = 0
        self.live: list[RtmpDestination] = []
        self._sub: Subscription | None = None
        self.packets_in = 0
        self.frames_in = 0  # program audio and video frames: what a healthy destination should get
        self.latency_us: list[int] = []  # drained each second by the service
        self.bad_packets = 0
        self.meter = ProgramMeter()
        self.ts: TsFeed | None = None  # the MPEG-TS of SRT destinations, muxed once for all of them
        self.ctx = {"tenant_id": tenant_id, "event_id": event_id}

    def ts_feed(self) -> TsFeed:
        """The program as MPEG-TS for SRT destinations, muxed from now on (created on first use)."""
        if self.ts is None:
            self.ts = TsFeed()
        return self.ts

    async def start(self) -> None:
        if self.profile == PASSTHROUGH:
            subject = subjects.program_media(self.tenant_id, self.event_id)
        else:
            subject = subjects.rendition_media(self.tenant_id, self.event_id, self.profile)
        self._sub = await self._nc.subscribe(
            subject,
            cb=self._on_msg,
            pending_msgs_limit=20_000,
            pending_bytes_limit=256 * 1024 * 1024,
        )

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None

    def attach(self, dest: RtmpDestination) -> None:
        """A destination just went live: give it headers and the current GOP, then live packets."""
        if dest in self.live:
            return
        self.live.append(dest)
        if self._gop:
            dest.begin(self._gop[0].timestamp)
            for item in self._preparer.headers():
                dest.write(item, header=True)
            for item in self._gop:
                dest.write(item)

    def detach(self, dest: RtmpDestination) -> None:
        if dest in self.live:
            self.live.remove(dest)
        self.joining = [(d, f) for d, f in self.joining if d is not dest]

    def handover(self, dest: RtmpDestination, source: EventFanout) -> None:
        """Move a live destination from ``source`` to this feed without reconnecting: it stays on
        ``source`` until this feed has a keyframe later than anything it sent, then switches there with
        this feed's sequence headers (RTMP allows new ones mid-stream). When this feed lags (a rendition
        is behind the program by its encode time) the destination leaves ``source`` at this feed's first
        keyframe and joins at the next: the stream pauses for under a GOP, its timestamps stay monotonic."""
        self.joining = [(d, f) for d, f in self.joining if d is not dest] + [(dest, source)]

    def _join(self, item: Prepared) -> None:
        waiting = []
        for dest, source in self.joining:
            if item.timestamp <= dest.last_ts or not dest.live_on_connection:
                if dest.live_on_connection:
                    source.detach(dest)  # this feed lags what it sent: stop there, join at the next keyframe
                waiting.append((dest, source))
                continue
            source.detach(dest)
            dest.switched_program(self, item.timestamp)
            for header in self._preparer.headers():
                dest.write(Prepared.make(header.type_id, item.timestamp, header.body))
            self.live.append(dest)
        self.joining = waiting

    def facts(self) -> ProgramFacts:
        return self.meter.facts()

    async def _on_msg(self, msg: Msg) -> None:
        try:
            packet = decode_packet(msg.data)
        except Exception as exc:
            self.bad_packets += 1
            log.warning("output.bad_packet", extra={**self.ctx, "error": str(exc)})
            return
        self.packets_in += 1
        if self.ts is not None:
            self.ts.on_packet(packet)
        prep = self._preparer
        for item in prep.prepare(packet):
            self._cache(item)
            self.meter.add(item)
            header = item is prep.video_header or item is prep.audio_header or item is prep.metadata
            if not header:
                self.frames_in += 1
            if self.joining and item.keyframe:
                self._join(item)
            wire: Wire = {}
            for dest in self.live:
                if not dest.started:
                    if not item.keyframe:
                        continue
                    dest.begin(item.timestamp)
                    for cached in prep.headers():
                        dest.write(cached, header=True)
                dest.send(item, header, wire)
            if item.recv_ns and len(self.latency_us) < LATENCY_SAMPLES_MAX:
                self.latency_us.append((time.time_ns() - item.recv_ns) // 1000)

    def _cache(self, item: Prepared) -> None:
        if item.keyframe:
            self._gop = [item]
            self._gop_bytes = len(item.chunked)
        elif self._gop and item.type_id != chunk.DATA_AMF0:
            self._gop.append(item)
            self._gop_bytes += len(item.chunked)
            if self._gop_bytes > GOP_CACHE_MAX_BYTES:
                self._gop = []  # an unusually long GOP: new destinations wait for the next keyframe
                self._gop_bytes = 0
