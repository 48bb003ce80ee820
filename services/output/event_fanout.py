"""Per event, per process: one subscription to the program feeding every destination of the event.

Each packet is serialised once (``Preparer``) and the same bytes go to every live destination. A GOP
cache (from the last keyframe) lets a destination that goes live mid-stream start at once.
"""

from __future__ import annotations

import logging
import time

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from shared import subjects
from shared.messages import decode_packet
from shared.rtmp import chunk

from .prepared import Prepared, Preparer
from .rtmp_destination import RtmpDestination

log = logging.getLogger(__name__)

GOP_CACHE_MAX_BYTES = 32 * 1024 * 1024
LATENCY_SAMPLES_MAX = 10_000


class EventFanout:
    def __init__(self, nc: Client, tenant_id: str, event_id: str) -> None:
        self._nc = nc
        self.tenant_id = tenant_id
        self.event_id = event_id
        self._preparer = Preparer()
        self._gop: list[Prepared] = []
        self._gop_bytes = 0
        self.live: list[RtmpDestination] = []
        self._sub: Subscription | None = None
        self.packets_in = 0
        self.latency_us: list[int] = []  # drained each second by the service
        self.bad_packets = 0
        self.ctx = {"tenant_id": tenant_id, "event_id": event_id}

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(
            subjects.program_media(self.tenant_id, self.event_id),
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

    async def _on_msg(self, msg: Msg) -> None:
        try:
            packet = decode_packet(msg.data)
        except Exception as exc:
            self.bad_packets += 1
            log.warning("output.bad_packet", extra={**self.ctx, "error": str(exc)})
            return
        self.packets_in += 1
        for item in self._preparer.prepare(packet):
            self._cache(item)
            for dest in self.live:
                if not dest.started:
                    if not item.keyframe:
                        continue
                    dest.begin(item.timestamp)
                    for header in self._preparer.headers():
                        dest.write(header, header=True)
                dest.send(item)
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
