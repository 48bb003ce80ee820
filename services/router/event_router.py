"""Per event: watch both inputs, decide which is on air, republish it as one continuous program.

The asyncio shell around ``failover.step``. It subscribes to every input of the event all the time
(the backup stays warm: its latest GOP is cached), to the event's ingest session events (a disconnect
triggers at once) and to router commands (manual switch); a 100 ms tick lets silence be noticed (parked
while nothing is on air and no input has sent video, as for an event started ahead of its encoders).
It carries out the machine's effects: restart the program timeline on another source (from the cached
keyframe when unplanned, at the next keyframe when planned), run the slate, publish FailoverEvents and
the router status. Everything that touches the timeline runs under one lock, so packets of a replayed
GOP and live packets never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from concurrent.futures import Executor

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from shared import subjects
from shared.messages import (
    TIMEBASE,
    EventSpec,
    FailoverEvent,
    MediaPacket,
    ProgramMark,
    RouterCommand,
    RouterInputState,
    RouterReply,
    RouterStatus,
    SessionEvent,
    decode,
    decode_packet,
    encode,
    encode_packet,
)

from . import failover
from .content_monitor import ContentMonitor
from .failover import SLATE
from .gop_cache import GopCache
from .marks import ProgramMarks, to_monotonic, to_wall
from .slate import SlateClock, SlateMedia, SlateParams, encode_slate
from .timeline import ProgramTimeline

log = logging.getLogger(__name__)

TICK_S = 0.1
STATUS_INTERVAL_S = 1.0
MAX_REPLAY_AGE_S = 4.0  # an older cached keyframe would put the program too far ahead of the wall clock
SLATE_WAIT_S = 10.0


def _inputs(spec: EventSpec) -> tuple[tuple[str, str], ...]:
    return tuple((i.id, i.role) for i in spec.inputs)


class EventRouter:
    def __init__(
        self, nc: Client, spec: EventSpec, pool: Executor, marks: ProgramMarks | None = None
    ) -> None:
        self._nc = nc
        self._marks = marks
        self._saved_mark: ProgramMark | None = None
        self._mark_task: asyncio.Task[None] | None = None
        self.spec = spec
        self._ctx = {"tenant_id": spec.tenant_id, "event_id": spec.id}
        self._timeline = ProgramTimeline()
        self.state = failover.initial(spec.failover, _inputs(spec), spec.locked_input, time.monotonic())
        self._caches: dict[str, GopCache] = {}
        self._content = ContentMonitor(pool, self._ctx)
        self._lock = asyncio.Lock()
        self._program_subject = subjects.program_media(spec.tenant_id, spec.id)
        self._subs: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.packets_out = 0
        self._seq = 0
        self.switches: deque[FailoverEvent] = deque(maxlen=failover.RECENT_MAX)
        # the slate: encoded once per program format, in a thread
        self._video_config = b""
        self._audio_config = b""
        self._slate: SlateMedia | None = None
        self._slate_wanted: SlateParams | None = None
        self._slate_encoding: asyncio.Task[None] | None = None
        self._slate_ready = asyncio.Event()
        self._slate_task: asyncio.Task[None] | None = None
        self._replayed: MediaPacket | None = None  # the last packet a switch replayed from a GOP cache
        self._absorbed = 0
        # the failover clock: parked while the machine waits for its first video (failover.waiting)
        self.ticks = 0
        self.clock_parked = False
        self._packet_seen = asyncio.Event()

    # --- lifecycle ---

    async def start(self) -> None:
        t, e = self.spec.tenant_id, self.spec.id
        mark = await self._marks.load(e) if self._marks else None
        if mark is not None:  # a router ran this program before: continue its timeline
            self._timeline.resume(mark.last_dts, to_monotonic(mark.last_wall), mark.lead)
            self._saved_mark = mark
            log.info("router.resumed", extra={**self._ctx, "last_dts": mark.last_dts})
        media = await self._nc.subscribe(
            subjects.event_inputs_media(t, e),
            cb=self._on_media,
            pending_msgs_limit=20_000,
            pending_bytes_limit=256 * 1024 * 1024,
        )
        self._subs.append(media)
        self._subs.append(await self._nc.subscribe(subjects.ingest_session(t, e), cb=self._on_session))
        self._subs.append(await self._nc.subscribe(subjects.router_command(t, e), cb=self._on_command))
        self._tasks.append(asyncio.create_task(self._tick_loop(), name=f"router-tick-{e}"))
        self._tasks.append(asyncio.create_task(self._status_loop(), name=f"router-status-{e}"))
        log.info(
            "router.event_started",
            extra={**self._ctx, "mode": self.state.mode, "locked_input": self.spec.locked_input},
        )

    async def stop(self, forget: bool = False) -> None:
        """Stop routing; ``forget`` (the event stopped or is gone) also drops its timeline mark."""
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        tasks = [*self._tasks, self._slate_task, self._slate_encoding, self._mark_task]
        self._tasks = []
        for task in tasks:
            if task is not None:
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._marks is not None:
            if forget:
                await self._marks.forget(self.spec.id)
            else:
                await self._save_mark()
        log.info("router.event_stopped", extra=self._ctx)

    async def update(self, spec: EventSpec) -> None:
        self.spec = spec
        for gone in set(self._caches) - {i.id for i in spec.inputs}:
            del self._caches[gone]
        event = failover.Configure(_inputs(spec), spec.failover, spec.locked_input)
        async with self._lock:
            await self._apply(event, time.monotonic())
        await self._publish_status()

    # --- inputs ---

    async def _on_media(self, msg: Msg) -> None:
        try:
            packet = decode_packet(msg.data)
        except Exception as exc:
            log.warning("router.bad_packet", extra={**self._ctx, "error": str(exc)})
            return
        now = time.monotonic()
        async with self._lock:
            self._caches.setdefault(packet.source, GopCache()).add(packet, now)
            self._replayed = None
            if packet.kind == "video":
                await self._apply(failover.Packet(packet.source), now)  # may replay the GOP up to here
                if self.clock_parked:
                    self._packet_seen.set()
            self._content.offer(packet, self.state.policy)
            if self._replayed is not packet:
                await self._feed(packet, now, msg.data)

    async def _on_session(self, msg: Msg) -> None:
        try:
            event = decode(msg.data, SessionEvent)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        if event.action != "closed" or not event.input_id:
            return
        async with self._lock:
            cache = self._caches.get(event.input_id)
            if cache is not None:
                cache.clear()
            self._content.forget(event.input_id)
            await self._apply(failover.Disconnected(event.input_id), time.monotonic())

    async def _on_command(self, msg: Msg) -> None:
        try:
            command = decode(msg.data, RouterCommand)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            reply = RouterReply(ok=False, code="bad_request", message=str(exc))
        else:
            async with self._lock:
                effects = await self._apply(failover.ManualSwitch(command.input_id), time.monotonic())
            answer = next((e for e in effects if isinstance(e, failover.Reply)), None)
            reply = RouterReply(
                ok=answer is not None and answer.ok,
                code=answer.code if answer else "internal",
                message=answer.message if answer else "",
                live_input=self.state.live or "",
            )
            log.info(
                "router.manual_switch",
                extra={**self._ctx, "input_id": command.input_id, "ok": reply.ok, "code": reply.code},
            )
        with contextlib.suppress(Exception):
            await msg.respond(encode(reply))

    async def _tick_loop(self) -> None:
        while True:
            if failover.waiting(self.state):
                self.clock_parked = True
                self._packet_seen.clear()
                await self._packet_seen.wait()  # only a packet can change a waiting machine
                self.clock_parked = False
            await asyncio.sleep(TICK_S)  # ok-sleep: the failover clock (loss timeout, content durations)
            self.ticks += 1
            try:
                async with self._lock:
                    now = time.monotonic()
                    for input_id, kind, bad in self._content.drain():
                        await self._apply(failover.Content(input_id, kind, bad), now)  # type: ignore[arg-type]
                    await self._apply(failover.Tick(), now)
            except Exception:
                log.exception("router.tick_failed", extra=self._ctx)

    # --- the machine and its effects ---

    async def _apply(self, event: failover.Event, now: float) -> list[failover.Effect]:
        self.state, effects = failover.step(self.state, event, now)
        for effect in effects:
            if isinstance(effect, failover.SwitchTo):
                await self._switch(effect, now)
            elif isinstance(effect, failover.Announce):
                await self._announce(effect.switch)
        return effects

    async def _switch(self, effect: failover.SwitchTo, now: float) -> None:
        log.info(
            "router.switch",
            extra={
                **self._ctx,
                "from": self.state.live or "",
                "to": effect.source,
                "reason": effect.reason,
                "planned": effect.planned,
            },
        )
        self._timeline.switch_to(effect.source)
        if effect.source == SLATE:
            if self._slate_task is None or self._slate_task.done():
                self._slate_task = asyncio.create_task(self._run_slate(), name=f"slate-{self.spec.id}")
            return
        if effect.planned:
            return  # at the input's next keyframe: no gap, no rewind
        cache = self._caches.get(effect.source)
        gop = cache.replay(now, MAX_REPLAY_AGE_S) if cache else []
        gop_ticks = self._timeline.gop_of(effect.source) or round(MAX_REPLAY_AGE_S * TIMEBASE)
        if gop and self._timeline.lead_after_replay(gop) > gop_ticks:
            # the program would run more than a GOP ahead of the wall clock (a lead from an earlier
            # replay not yet paid back): wait for the next keyframe instead, which pays it back
            log.info("router.replay_skipped", extra={**self._ctx, "input_id": effect.source})
            gop = []
        out = self._timeline.replay(gop)
        if not out:
            return  # nothing fresh cached: at the input's next keyframe
        self._replayed = gop[-1][0]
        for packet in out:
            await self._publish(packet)
        await self._apply(failover.Activated(effect.source), time.monotonic())
        self._save_mark_soon()

    async def _feed(self, packet: MediaPacket, now: float, raw: bytes | None = None) -> None:
        before = self._timeline.source
        out = self._timeline.feed(packet, now)
        if out is None:
            return
        if self._timeline.absorbed != self._absorbed:
            log.info(
                "router.lead_paid_back",
                extra={
                    **self._ctx,
                    "paid_ms": round((self._timeline.absorbed - self._absorbed) / 90, 1),
                    "lead_ms": round(self._timeline.lead / 90, 1),
                },
            )
            self._absorbed = self._timeline.absorbed
        await self._publish(out, raw if out is packet else None)
        if self._timeline.source != before and self._timeline.source is not None:
            await self._apply(failover.Activated(self._timeline.source), time.monotonic())

    async def _publish(self, out: MediaPacket, raw: bytes | None = None) -> None:
        if out.config and (out.keyframe if out.kind == "video" else out.config != self._audio_config):
            self._note_format(out)
        self.packets_out += 1
        await self._nc.publish(self._program_subject, raw or encode_packet(out))

    async def _announce(self, switch: failover.Switch) -> None:
        self._seq += 1
        event = FailoverEvent(
            tenant_id=self.spec.tenant_id,
            event_id=self.spec.id,
            from_input=switch.from_source,
            to_input=switch.to_source,
            reason=switch.reason,  # type: ignore[arg-type]
            planned=switch.planned,
            trigger_ts=to_wall(switch.triggered_at),
            activated_ts=to_wall(switch.activated_at),
            activation_ms=round(switch.activation_s * 1000, 1),
            seq=self._seq,
        )
        self.switches.append(event)
        log.info(
            "router.failover",
            extra={
                **self._ctx,
                "from": event.from_input,
                "to": event.to_input,
                "reason": event.reason,
                "planned": event.planned,
                "activation_ms": event.activation_ms,
                "lead_ms": round(self._timeline.lead / 90, 1),
            },
        )
        with contextlib.suppress(Exception):
            await self._nc.publish(subjects.failover_events(self.spec.tenant_id, self.spec.id), encode(event))
        await self._publish_status()

    # --- status ---

    def status(self) -> RouterStatus:
        now = time.monotonic()
        state = self.state
        return RouterStatus(
            tenant_id=self.spec.tenant_id,
            event_id=self.spec.id,
            live_input=state.live or "",
            pending_input=state.pending.to_source if state.pending else "",
            mode=state.mode,
            locked_input=state.locked_input if state.mode == "locked" else "",
            inputs=[
                RouterInputState(
                    input_id=t.input_id,
                    role=t.role,
                    healthy=failover.problem(t, state.policy, now) is None,
                    problem=failover.problem(t, state.policy, now) or "",
                    clean_s=round(failover.clean_for(t, state.policy, now), 1),
                )
                for t in state.tracks
            ],
            recent_switches=list(self.switches),
            packets_out=self.packets_out,
            ts=time.time(),
        )

    async def _publish_status(self) -> None:
        with contextlib.suppress(Exception):
            await self._nc.publish(
                subjects.router_status(self.spec.tenant_id, self.spec.id), encode(self.status())
            )

    async def _status_loop(self) -> None:
        while True:
            await self._publish_status()
            await self._save_mark()
            await asyncio.sleep(STATUS_INTERVAL_S)  # ok-sleep: periodic status report

    # --- the timeline mark (continuity across router restarts) ---

    async def _save_mark(self) -> None:
        current = self._timeline.mark()
        if self._marks is None or current is None:
            return
        last_dts, last_wall, lead = current
        mark = ProgramMark(last_dts, to_wall(last_wall), lead)
        if self._saved_mark is not None and mark.last_dts == self._saved_mark.last_dts:
            return
        self._saved_mark = mark
        await self._marks.save(self.spec.id, mark)

    def _save_mark_soon(self) -> None:
        if self._marks is not None and (self._mark_task is None or self._mark_task.done()):
            self._mark_task = asyncio.create_task(self._save_mark(), name=f"router-mark-{self.spec.id}")

    # --- the slate ---

    def _note_format(self, packet: MediaPacket) -> None:
        """Keep a slate encoded for the program's current format (inputs only, never the slate's own)."""
        if self._timeline.source == SLATE:
            return
        if packet.kind == "video":
            self._video_config = packet.config
        else:
            self._audio_config = packet.config
        params = SlateParams.of_program(self._video_config, self._timeline.frame_ticks, self._audio_config)
        if params is None or params == self._slate_wanted:
            return
        self._slate_wanted = params
        if self._slate_encoding is None or self._slate_encoding.done():
            self._slate_encoding = asyncio.create_task(
                self._encode_slate(), name=f"slate-encode-{self.spec.id}"
            )

    async def _encode_slate(self) -> None:
        while self._slate_wanted is not None and (
            self._slate is None or self._slate.params != self._slate_wanted
        ):
            params = self._slate_wanted
            try:
                media = await asyncio.to_thread(encode_slate, params)
            except Exception:
                log.exception("router.slate_failed", extra={**self._ctx, "params": str(params)})
                return
            self._slate = media
            self._slate_ready.set()
            log.info("router.slate_ready", extra={**self._ctx, "params": str(params)})

    def _on_slate(self) -> bool:
        return SLATE in (self._timeline.source, self._timeline.pending)

    async def _run_slate(self) -> None:
        """Loop the slate in real time while it is on air (or about to be)."""
        try:
            await asyncio.wait_for(self._slate_ready.wait(), SLATE_WAIT_S)
        except TimeoutError:
            log.error("router.slate_unavailable", extra=self._ctx)
            return
        assert self._slate is not None
        clock = SlateClock(self._slate)
        started = time.monotonic()
        log.info("router.slate_started", extra=self._ctx)
        while self._on_slate():
            async with self._lock:
                if not self._on_slate():
                    break
                now = time.monotonic()
                if self._timeline.source != SLATE and not clock.at_keyframe and self._slate is not None:
                    # back on the slate mid-loop (an input came and went): start again at its IDR
                    clock, started = SlateClock(self._slate), now
                for packet in clock.due(now - started):
                    if not self._on_slate():
                        break
                    await self._feed(packet, now)
            delay = started + clock.next_due_s() - time.monotonic()
            await asyncio.sleep(max(0.0, delay))  # ok-sleep: the slate is paced by the wall clock
        log.info("router.slate_stopped", extra=self._ctx)
