"""One SRT destination: push to a partner's listener (caller), or let the partner pull (listener).

The asyncio shell around the same ``OutputMachine`` as RTMP destinations. Media is the event's
``TsFeed``: MPEG-TS muxed once per event, cut into 1316-byte messages, the same bytes for every SRT
destination; ``send`` queues each message with a non-blocking ``srt_sendmsg``. When libsrt's send
buffer is full the destination drops to the next keyframe and counts it. The ``SrtPoller``
reports a broken connection (libsrt's own peer-idle timeout covers a vanished partner).

A caller connects (blocking, in a thread, bounded by the class's stall limit) and a refusal by the
partner (wrong passphrase, stream id refused) counts as rejected. A listener binds its port once and
keeps it for the output's life: waiting for the partner is ``connecting``, a partner pulling is
``live``, a partner leaving is a failure that never auto-disables the output. The passphrase comes
from the vault at connect (or listen) time when the output references a credential, else from its URL;
it never appears in a log or a status.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable
from typing import Protocol

from shared import netguard, urls
from shared.messages import OutputSpec, OutputStatus
from shared.srt import lib as L
from shared.srt.poller import Inbox, SrtPoller
from shared.srt.socket import HookAnswer, Options, SrtError, SrtSocket

from . import policy as policies
from . import secure_connect
from . import state as sm
from .policy import DestinationPolicy, ProgramFacts
from .reconnect_gate import ReconnectGate
from .state import OutputMachine, OutputState
from .status import output_status
from .ts_feed import TsFeed

log = logging.getLogger(__name__)

DRAIN_S = 1.5  # on stop, wait at most this long for the partner to take what is queued

# a refusal by the partner itself (not the network): do not hammer it
_REJECTIONS = frozenset({L.SRT_REJ_BADSECRET, L.SRT_REJ_UNSECURE, 2})  # 2: SRT_REJ_PEER


class Program(Protocol):
    def facts(self) -> ProgramFacts: ...


class SrtDestination:
    def __init__(
        self,
        tenant_id: str,
        event_id: str,
        spec: OutputSpec,
        policy: DestinationPolicy,
        feed: TsFeed,
        program: Program,
        poller: SrtPoller,
        gate: ReconnectGate,
        on_status: Callable[[OutputStatus], None],
        worker: str,
        rand: Callable[[], float] = random.random,
        allowlist: netguard.Allowlist | None = None,
        resolve_key: secure_connect.KeyResolver | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self.event_id = event_id
        self.spec = spec
        self._allowlist = allowlist  # the SSRF guard at connect time (caller), the address pinned
        self._resolve_key = resolve_key  # the passphrase from the vault (spec.credential_id)
        self.target = secure_connect.srt_target_of(spec.url, bool(spec.credential_id))
        self.safe_url = urls.sanitize(spec.url)
        if self.target.mode == "listener":
            policy = dataclasses.replace(policy, disable_failures=0)  # partners come and go
        self.policy = policy
        self._feed = feed
        self._program = program
        self._poller = poller
        self._gate = gate
        self._on_status = on_status
        self._worker = worker
        self._rand = rand
        self._wall_offset = time.time() - time.monotonic()
        self.machine = OutputMachine(policy, time.monotonic())
        self.bytes_sent = 0
        self.frames_sent = 0
        self.frames_dropped = 0
        self.drop_events = 0
        self.warnings: list[str] = []
        self.started = False  # set by the feed: a keyframe has been sent on this connection
        self._sock: SrtSocket | None = None
        self._inbox: Inbox | None = None
        self._listener: SrtSocket | None = None
        self._partners: asyncio.Queue[tuple[SrtSocket, str]] = asyncio.Queue()
        self._live = False
        self._dropping = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.ctx = {"tenant_id": tenant_id, "event_id": event_id, "output_id": spec.id}

    @property
    def state(self) -> OutputState:
        return self.machine.state

    # --- lifecycle ---

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stopping = True
        self._feed.detach(self)  # nothing more from the feed, and no second copy of its tail
        tail = self._feed.pending()
        if tail and self._live and self.started:
            self.send(tail)  # the rest of the last frame: the partner's file ends on a whole picture
        await self._drain()
        effects = self.machine.handle(sm.Stop(time.monotonic()))
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._apply(effects)
        self._close_connection()
        if self._listener is not None:
            self._poller.unwatch(self._listener)
            self._listener.close()
            self._listener = None
        while not self._partners.empty():
            self._partners.get_nowait()[0].close()

    async def _drain(self) -> None:
        """Close gracefully: live mode has no linger, and a partner like ffmpeg stops reading when the
        connection breaks, dropping what its receive buffer still holds for the latency. So wait until
        everything is acknowledged, then one latency more, before closing (bounded by DRAIN_S)."""
        sock = self._sock
        deadline = time.monotonic() + DRAIN_S
        while sock is not None and self._live and time.monotonic() < deadline:
            try:
                if sock.get_int(L.SRTO_SNDDATA) == 0:
                    break
            except SrtError:
                return
            await asyncio.sleep(0.02)  # ok-sleep: polling libsrt's send buffer, bounded by DRAIN_S
        else:
            return
        linger = min(self.target.latency_ms / 1000 + 0.1, max(0.0, deadline - time.monotonic()))
        await asyncio.sleep(linger)  # ok-sleep: the partner plays out its latency buffer before we close

    async def _run(self) -> None:
        m = self.machine
        if self.spec.auto_disabled:
            self._apply(m.handle(sm.Disable(time.monotonic(), self.spec.auto_disabled)))
            return
        self._apply(m.handle(sm.Start(time.monotonic())))
        while not self._stopping:
            if m.state is OutputState.CONNECTING:
                await self._attempt()
            elif m.state in (OutputState.BACKOFF, OutputState.REJECTED):
                await asyncio.sleep(max(0.0, m.retry_at - time.monotonic()))
                self._apply(m.handle(sm.RetryDue(time.monotonic())))
            else:
                return

    def _apply(self, effects: list[sm.Effect]) -> None:
        for effect in effects:
            if isinstance(effect, sm.StateChanged):
                log.info(
                    "output.state",
                    extra={
                        **self.ctx,
                        "old": effect.old.value,
                        "new": effect.new.value,
                        "reason": effect.reason,
                        "error": self.machine.last_error if effect.new is not OutputState.LIVE else "",
                        "url": self.safe_url,
                    },
                )
                self._on_status(self.status())
            elif isinstance(effect, sm.Attach):
                self._live = True
                self._dropping = False
                self._feed.attach(self)
            elif isinstance(effect, sm.Disconnect):
                self._live = False
                self._feed.detach(self)
                self._close_connection()

    def _fail(self, error: str, rejected: bool = False) -> None:
        if self._stopping:
            return
        log.warning(
            "output.failed", extra={**self.ctx, "error": error, "rejected": rejected, "url": self.safe_url}
        )
        self._apply(self.machine.handle(sm.Failed(time.monotonic(), error, rejected, self._rand())))

    async def _attempt(self) -> None:
        try:
            if self.target.mode == "caller":
                await self._fetch_passphrase()
                address = self.target.host
                if self._allowlist is not None:
                    address = (await netguard.resolve(address, self.target.port, self._allowlist)).address
                async with self._gate.slot(self.policy.priority):
                    sock, peer = await asyncio.to_thread(self._connect, address), ""
            else:
                sock, peer = await self._next_partner()
        except SrtError as exc:
            rejected = exc.reject_reason in _REJECTIONS or exc.reject_reason >= 1000
            self._fail(self._scrub(_describe(exc)), rejected=rejected)
            return
        except (netguard.DestinationRefused, secure_connect.Refused) as exc:
            self._fail(str(exc), rejected=True)
            return
        except OSError as exc:  # name resolution, a port already in use
            self._fail(self._scrub(f"{type(exc).__name__}: {exc}"))
            return
        if self._stopping:
            sock.close()
            return
        self._sock = sock
        self._inbox = Inbox(asyncio.get_running_loop(), max_messages=64)
        self._poller.watch(sock, self._inbox)
        if peer:
            log.info("output.srt_partner_connected", extra={**self.ctx, "remote": peer})
        self._apply(self.machine.handle(sm.Published(time.monotonic())))
        inbox = self._inbox
        while await inbox.get():
            pass  # a partner sending to us: nothing to do with it
        self._fail(f"connection lost: {inbox.closed_reason or 'closed'}")

    def _connect(self, address: str) -> SrtSocket:
        """Blocking: configure, connect (bounded by the stall limit), then switch to non-blocking."""
        t = self.target
        sock = SrtSocket()
        try:
            sock.configure(self._options(), blocking=True)
            sock.connect(address, t.port)
            sock.set_blocking(False)
            if self._stopping:
                raise SrtError("srt_connect", 0, "stopped while connecting")
        except BaseException:
            sock.close()
            raise
        return sock

    def _options(self) -> Options:
        t = self.target
        return Options(
            latency_ms=t.latency_ms,
            passphrase=t.passphrase,
            pbkeylen=t.pbkeylen,
            streamid=t.streamid if t.mode == "caller" else "",
            conn_timeout_ms=int(self.policy.stall_limit_s * 1000),
            peer_idle_timeout_ms=int(max(self.policy.stall_limit_s, 2.0) * 1000),
        )

    async def _fetch_passphrase(self) -> None:
        """The passphrase from the vault, fresh for each connection (a rotation applies at the next one)."""
        if self._resolve_key is not None:
            key = await self._resolve_key()
            self.target = dataclasses.replace(self.target, passphrase=key.reveal())

    async def _next_partner(self) -> tuple[SrtSocket, str]:
        if self._listener is None:
            await self._fetch_passphrase()
            listener = SrtSocket()
            try:
                listener.configure(self._options())
                listener.bind(self.target.host, self.target.port)
                listener.set_listen_hook(self._hook)
                listener.listen(backlog=2)
            except BaseException:
                listener.close()
                raise
            self._listener = listener
            self._poller.watch_listener(listener, self._on_partner)
            log.info("output.srt_listening", extra={**self.ctx, "port": listener.local_port()})
        return await self._partners.get()

    def _hook(self, ns: int, peer: str, streamid: str) -> HookAnswer:
        """On libsrt's thread: one partner at a time, presenting the stream id when the URL names one."""
        if self.target.streamid and streamid != self.target.streamid:
            log.warning(
                "output.srt_partner_refused", extra={**self.ctx, "remote": peer, "reason": "stream id"}
            )
            return HookAnswer(False, L.SRT_REJX_FORBIDDEN)
        if self._live or not self._partners.empty():
            log.warning("output.srt_partner_refused", extra={**self.ctx, "remote": peer, "reason": "busy"})
            return HookAnswer(False, L.SRT_REJX_CONFLICT)
        return HookAnswer(True)

    def _on_partner(self, sock: SrtSocket, peer: str) -> None:
        if self._stopping or self._live or not self._partners.empty():
            sock.close()
            return
        self._partners.put_nowait((sock, peer))

    def _close_connection(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            self._poller.unwatch(sock)
            sock.close()
        if self._inbox is not None:
            self._inbox.close("closed")
            self._inbox = None
        self.started = False

    def _scrub(self, text: str) -> str:
        for secret in (self.target.passphrase, self.target.streamid):
            if secret:
                text = text.replace(secret, urls.mask_secret(secret))
        return text.replace(self.spec.url, self.safe_url)

    # --- each second, from the service ---

    def tick(self, now: float) -> None:
        self.warnings = policies.violations(self.policy, self._program.facts())

    def status(self) -> OutputStatus:
        return output_status(
            tenant_id=self.tenant_id,
            event_id=self.event_id,
            spec=self.spec,
            machine=self.machine,
            policy=self.policy,
            worker=self._worker,
            wall_offset=self._wall_offset,
            bytes_sent=self.bytes_sent,
            frames_sent=self.frames_sent,
            frames_dropped=self.frames_dropped,
            drop_events=self.drop_events,
            warnings=self.warnings,
        )

    # --- media path (called synchronously by the feed) ---

    def send(self, message: bytes) -> None:
        sock = self._sock
        if sock is None or not self._live:
            return
        if self._dropping:
            if not _starts_keyframe(message):
                return
            self._dropping = False
        try:
            queued = sock.sendmsg(message)
        except SrtError:
            return  # broken: the poller reports it and the machine reconnects
        if queued:
            self.bytes_sent += len(message)
            return
        self._dropping = True
        self.drop_events += 1
        log.warning("output.slow_destination", extra={**self.ctx, "dropped": self.frames_dropped})

    def frame_sent(self) -> None:
        if self._dropping:
            self.frames_dropped += 1
        elif self._live:
            self.frames_sent += 1


def _starts_keyframe(message: bytes) -> bool:
    """The feed starts a message with PAT at every keyframe."""
    return len(message) >= 4 and bool(message[1] & 0x40) and ((message[1] & 0x1F) << 8 | message[2]) == 0


def _describe(exc: SrtError) -> str:
    if exc.code == L.SRT_ECONNREJ and exc.reject_reason:
        return f"partner refused the connection: {exc.text}"
    return exc.text
