"""Output service: runs a destination worker for every enabled output of every live event.

Reconciles from desired state; one EventFanout per event with destinations in this process. Each output
runs under its destination class's policy; connection attempts share one per-process ReconnectGate.
Output status goes on the bus on every state change and each second; worker stats each second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter

import msgspec

from shared import subjects
from shared.desired import DesiredState
from shared.messages import EventSpec, OutputSpec, OutputStatus, WorkerStats, encode
from shared.service import ServiceContext
from shared.srt.poller import SrtPoller

from . import policy
from .event_fanout import EventFanout
from .reconnect_gate import ReconnectGate
from .rtmp_destination import RtmpDestination
from .srt_destination import SrtDestination
from .state import OutputState

log = logging.getLogger(__name__)


class OutputService:
    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self.classes, cap = policy.load()
        self.gate = ReconnectGate(cap)
        self.fanouts: dict[str, EventFanout] = {}
        self.destinations: dict[str, RtmpDestination | SrtDestination] = {}
        self._poller: SrtPoller | None = None  # one thread for every SRT destination, started on first use
        self._specs: dict[str, OutputSpec] = {}

    def _wanted(self, spec: EventSpec | None) -> dict[str, OutputSpec]:
        if spec is None or spec.state != "live":
            return {}
        return {o.id: o for o in spec.outputs if o.enabled}

    def _unchanged(self, oid: str, new: OutputSpec) -> bool:
        """Same output run: identical spec, or only the auto-disable recorded for one already disabled."""
        old = self._specs[oid]
        if old == new:
            return True
        dest = self.destinations[oid]
        if dest.state is OutputState.DISABLED and msgspec.structs.replace(new, auto_disabled="") == old:
            self._specs[oid] = new
            dest.spec = new
            return True
        return False

    async def on_change(self, event_id: str, old: EventSpec | None, new: EventSpec | None) -> None:
        wanted = self._wanted(new)
        running = {oid for oid, d in self.destinations.items() if d.event_id == event_id}
        for oid in running:
            if oid not in wanted or not self._unchanged(oid, wanted[oid]):
                await self._stop_output(oid)
        if not wanted:
            fanout = self.fanouts.pop(event_id, None)
            if fanout is not None:
                await fanout.stop()
            return
        assert new is not None
        fanout = self.fanouts.get(event_id)
        if fanout is None:
            fanout = EventFanout(self._ctx.nc, new.tenant_id, event_id)
            self.fanouts[event_id] = fanout
            await fanout.start()
        for oid, ospec in wanted.items():
            if oid not in self.destinations:
                self._start_output(new, ospec, fanout)

    def _start_output(self, event: EventSpec, spec: OutputSpec, fanout: EventFanout) -> None:
        dest: RtmpDestination | SrtDestination
        try:
            if spec.url[:6].lower() == "srt://":
                dest = self._srt_output(event, spec, fanout)
            else:
                dest = RtmpDestination(
                    event.tenant_id,
                    event.id,
                    spec,
                    policy.for_class(self.classes, spec.dest_class),
                    program=fanout,
                    gate=self.gate,
                    on_status=self._publish_status,
                    worker=self._ctx.settings.worker_id,
                    ca_file=self._ctx.settings.tls_ca_file,
                )
        except (ValueError, OSError) as exc:
            log.error("output.bad_spec", extra={"output_id": spec.id, "error": str(exc)})
            return
        self.destinations[spec.id] = dest
        self._specs[spec.id] = spec
        dest.start()

    def _srt_output(self, event: EventSpec, spec: OutputSpec, fanout: EventFanout) -> SrtDestination:
        if self._poller is None:
            self._poller = SrtPoller()
            self._poller.start()
        return SrtDestination(
            event.tenant_id,
            event.id,
            spec,
            policy.for_class(self.classes, spec.dest_class),
            feed=fanout.ts_feed(),
            program=fanout,
            poller=self._poller,
            gate=self.gate,
            on_status=self._publish_status,
            worker=self._ctx.settings.worker_id,
        )

    async def _stop_output(self, output_id: str) -> None:
        dest = self.destinations.pop(output_id)
        self._specs.pop(output_id, None)
        await dest.stop()

    def _publish_status(self, status: OutputStatus) -> None:
        subject = subjects.output_state(status.tenant_id, status.event_id, status.output_id)
        task = asyncio.ensure_future(self._ctx.nc.publish(subject, encode(status)))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def status_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for dest in list(self.destinations.values()):
                dest.tick(now)
                self._publish_status(dest.status())
            await self._publish_worker_stats()

    def worker_stats(self) -> WorkerStats:
        latency: list[int] = []
        for fanout in self.fanouts.values():
            latency += fanout.latency_us
            fanout.latency_us = []
        dests = list(self.destinations.values())
        return WorkerStats(
            service="output",
            worker=self._ctx.settings.worker_id,
            destinations=len(dests),
            frames_sent=sum(d.frames_sent for d in dests),
            frames_dropped=sum(d.frames_dropped for d in dests),
            latency_us=latency,
            ts=time.time(),
            outputs_by_state=dict(Counter(d.state.value for d in dests)),
            reconnect_cap=self.gate.cap,
            reconnecting=self.gate.active,
            reconnecting_max=self.gate.max_active,
            reconnect_waiting=self.gate.waiting,
            program_frames=sum(f.frames_in for f in self.fanouts.values()),
        )

    async def _publish_worker_stats(self) -> None:
        stats = self.worker_stats()
        with contextlib.suppress(Exception):
            await self._ctx.nc.publish(
                subjects.worker_stats("output", self._ctx.settings.worker_id), encode(stats)
            )

    async def close(self) -> None:
        await asyncio.gather(
            *(self._stop_output(oid) for oid in list(self.destinations)), return_exceptions=True
        )
        for fanout in self.fanouts.values():
            with contextlib.suppress(Exception):
                await fanout.stop()
        self.fanouts.clear()
        if self._poller is not None:
            await self._poller.close()


async def main(ctx: ServiceContext) -> None:
    try:
        service = OutputService(ctx)
    except ValueError as exc:
        raise SystemExit(f"output: {exc}") from None
    desired = DesiredState(ctx.nc, service.on_change)
    ctx.stack.push_async_callback(service.close)
    ctx.spawn(desired.run(), "desired-watch")
    ctx.spawn(service.status_loop(), "status")
