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

from shared import bus, netguard, subjects
from shared.desired import DesiredState
from shared.leases import LeaseKeeper
from shared.messages import EventSpec, OutputSpec, OutputStatus, WorkerStats, encode
from shared.service import ServiceContext
from shared.srt.poller import SrtPoller
from shared.vault_client import VaultClient

from . import policy, secure_connect
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
        self.fanouts: dict[tuple[str, str], EventFanout] = {}  # (event id, profile): program or rendition
        self.destinations: dict[str, RtmpDestination | SrtDestination] = {}
        self._poller: SrtPoller | None = None  # polls every SRT destination; started on first use
        self._specs: dict[str, OutputSpec] = {}
        # an output runs here only while this worker holds its lease; wanted ones held elsewhere wait here
        self.leases: LeaseKeeper | None = None
        self.desired: DesiredState | None = None
        self._waiting: dict[str, str] = {}  # output id -> event id
        self.vault = VaultClient(ctx.nc)
        self.allowlist = netguard.Allowlist.parse(ctx.settings.destination_allowlist)

    def _wanted(self, spec: EventSpec | None) -> dict[str, OutputSpec]:
        if spec is None or spec.state != "live":
            return {}
        return {o.id: o for o in spec.outputs if o.enabled}

    def _unchanged(self, oid: str, new: OutputSpec, event: EventSpec | None = None) -> bool:
        """Same output run: identical spec, only the auto-disable recorded for one already disabled, or
        only the profile changed on an RTMP destination (it moves feed on its connection)."""
        old = self._specs[oid]
        if old == new:
            return True
        dest = self.destinations[oid]
        if (
            event is not None
            and isinstance(dest, RtmpDestination)
            and msgspec.structs.replace(new, profile=old.profile) == old
        ):
            self._specs[oid] = new
            dest.spec = new
            self._move(dest, event, old.profile, new.profile)
            return True
        if dest.state is OutputState.DISABLED and msgspec.structs.replace(new, auto_disabled="") == old:
            self._specs[oid] = new
            dest.spec = new
            return True
        return False

    def _fanout(self, event: EventSpec, profile: str) -> EventFanout:
        """The event's feed for ``profile`` (started by ``on_change`` before any output uses it)."""
        return self.fanouts[(event.id, profile)]

    def _move(self, dest: RtmpDestination, event: EventSpec, old: str, new: str) -> None:
        source, target = self.fanouts.get((event.id, old)), self._fanout(event, new)
        log.info("output.profile_changed", extra={**dest.ctx, "old": old, "new": new})
        if source is not None and dest.live_on_connection:
            target.handover(dest, source)  # new sequence headers at its next keyframe, same connection
        else:
            if source is not None:
                source.detach(dest)
            dest.switched_program(target, 0)

    async def on_change(self, event_id: str, old: EventSpec | None, new: EventSpec | None) -> None:
        wanted = self._wanted(new)
        if new is not None:  # every feed the wanted outputs use exists before any output moves to it
            for profile in {o.profile for o in wanted.values()}:
                if (event_id, profile) not in self.fanouts:
                    fanout = EventFanout(self._ctx.nc, new.tenant_id, event_id, profile)
                    self.fanouts[(event_id, profile)] = fanout
                    await fanout.start()
        running = {oid for oid, d in self.destinations.items() if d.event_id == event_id}
        for oid in running:
            if oid not in wanted or not self._unchanged(oid, wanted[oid], new):
                await self._stop_output(oid, release=oid not in wanted)
        for oid in [o for o, ev in self._waiting.items() if ev == event_id and o not in wanted]:
            del self._waiting[oid]
            if self.leases is not None:
                await self.leases.unwant(oid)
        if new is not None:
            for oid, ospec in wanted.items():
                if oid not in self.destinations:
                    if self.leases is None or await self.leases.want(oid):
                        self._waiting.pop(oid, None)
                        self._start_output(new, ospec, self._fanout(new, ospec.profile))
                    else:
                        self._waiting[oid] = (
                            event_id  # another worker runs it; taken over if its lease lapses
                        )
        await self._prune_fanouts()

    async def _prune_fanouts(self) -> None:
        """Stop feeds no output here uses, waits for, or is still moving away from."""
        needed = {
            (d.event_id, s.profile) for oid, d in self.destinations.items() if (s := self._specs.get(oid))
        }
        for oid, event_id in self._waiting.items():
            event = self.desired.events.get(event_id) if self.desired else None
            needed |= {(event_id, o.profile) for o in (event.outputs if event else ()) if o.id == oid}
        for fanout in self.fanouts.values():
            needed |= {(source.event_id, source.profile) for _, source in fanout.joining}
        for key in [k for k in self.fanouts if k not in needed]:
            await self.fanouts.pop(key).stop()

    async def on_lease_acquired(self, output_id: str) -> None:
        event_id = self._waiting.pop(output_id, None)
        event = self.desired.events.get(event_id) if self.desired and event_id else None
        spec = next((o for o in event.outputs if o.id == output_id), None) if event else None
        fanout = self.fanouts.get((event.id, spec.profile)) if event and spec else None
        if event is None or spec is None or fanout is None or output_id in self.destinations:
            return
        log.info("output.taken_over", extra={"event_id": event.id, "output_id": output_id})
        self._start_output(event, spec, fanout)

    async def on_lease_lost(self, output_id: str) -> None:
        dest = self.destinations.get(output_id)
        if dest is None:
            return
        log.warning("output.lease_lost", extra={"event_id": dest.event_id, "output_id": output_id})
        await self._stop_output(output_id, release=False)
        self._waiting[output_id] = dest.event_id

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
                    resolve_key=self._key_resolver(event, spec),
                    allowlist=self.allowlist,
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
            allowlist=self.allowlist,
            resolve_key=self._key_resolver(event, spec),
        )

    def _key_resolver(self, event: EventSpec, spec: OutputSpec) -> secure_connect.KeyResolver | None:
        if not spec.credential_id:
            return None
        worker = self._ctx.settings.worker_id
        return secure_connect.key_resolver(
            self.vault, event.tenant_id, event.id, spec.id, spec.credential_id, worker
        )

    async def _stop_output(self, output_id: str, release: bool = True) -> None:
        dest = self.destinations.pop(output_id)
        self._specs.pop(output_id, None)
        await dest.stop()
        if release and self.leases is not None:
            await self.leases.unwant(output_id)

    def _publish_status(self, status: OutputStatus) -> None:
        spec = self._specs.get(status.output_id)
        if spec is not None and spec.profile != status.profile:
            status = msgspec.structs.replace(status, profile=spec.profile)
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
            await self._prune_fanouts()
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
            program_frames=sum(f.frames_in for f in self.fanouts.values() if f.profile == "passthrough"),
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
    service.desired = desired
    service.leases = LeaseKeeper(
        await bus.lease_bucket(ctx.nc),
        ctx.settings.worker_id,
        on_acquired=service.on_lease_acquired,
        on_lost=service.on_lease_lost,
    )
    ctx.stack.push_async_callback(service.close)
    ctx.spawn(service.leases.run(), "leases")
    ctx.spawn(desired.run(), "desired-watch")
    ctx.spawn(service.status_loop(), "status")
