"""Per event: subscribe to the inputs, choose the live one, republish it as the program."""

from __future__ import annotations

import logging
import time

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from shared import subjects
from shared.messages import EventSpec, decode_packet, encode_packet

from .selector import DEFAULT_LOSS_TIMEOUT_S, Candidate, choose
from .timeline import ProgramTimeline

log = logging.getLogger(__name__)


class EventRouter:
    def __init__(self, nc: Client, spec: EventSpec) -> None:
        self._nc = nc
        self.spec = spec
        self._timeline = ProgramTimeline()
        self._last_packet: dict[str, float] = {}
        self._program_subject = subjects.program_media(spec.tenant_id, spec.id)
        self._sub: Subscription | None = None
        self.packets_out = 0
        self._ctx = {"tenant_id": spec.tenant_id, "event_id": spec.id}

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(
            subjects.event_inputs_media(self.spec.tenant_id, self.spec.id),
            cb=self._on_msg,
            pending_msgs_limit=20_000,
            pending_bytes_limit=256 * 1024 * 1024,
        )
        log.info("router.event_started", extra=self._ctx)

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        log.info("router.event_stopped", extra=self._ctx)

    def update(self, spec: EventSpec) -> None:
        self.spec = spec

    async def _on_msg(self, msg: Msg) -> None:
        try:
            packet = decode_packet(msg.data)
        except Exception as exc:
            log.warning("router.bad_packet", extra={**self._ctx, "error": str(exc)})
            return
        now = time.monotonic()
        self._last_packet[packet.source] = now
        if packet.source != self._timeline.source:
            self._reselect(now)
        elif packet.kind == "video" and packet.keyframe:
            self._reselect(now)  # a preferred input coming back takes over at its keyframe
        out = self._timeline.feed(packet, now)
        if out is None:
            return
        self.packets_out += 1
        await self._nc.publish(self._program_subject, msg.data if out is packet else encode_packet(out))

    def _reselect(self, now: float) -> None:
        candidates = [Candidate(i.id, i.role, self._last_packet.get(i.id)) for i in self.spec.inputs]
        choice = choose(candidates, self._timeline.source, now, DEFAULT_LOSS_TIMEOUT_S)
        if choice is not None and choice != self._timeline.source and choice != self._timeline.pending:
            log.info(
                "router.switch_pending", extra={**self._ctx, "from": self._timeline.source, "to": choice}
            )
            self._timeline.switch_to(choice)
