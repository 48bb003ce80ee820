"""One output's life as a pure state machine: ``machine.handle(input) -> effects``, no I/O, no clock.

States: ``idle`` (created), ``connecting`` (an attempt is running, or waiting for a reconnect slot),
``live`` (published, media flows), ``backoff`` (a network failure; retry after a growing pause),
``rejected`` (the destination refused the publish: bad key, name in use, TLS or auth; a slower retry),
``disabled`` (too many failures within the class's window; stays off until re-enabled through the
API, which starts a new machine), ``stopped`` (the output or its event was stopped; final).

The shell (``rtmp_destination``) feeds inputs with a monotonic ``now`` and a random ``jitter`` and carries
out the effects: connect, join or leave the fan-out, close (unpublishing first when live), wait.
Every state change comes out as a ``StateChanged`` effect with its reason, which the shell logs and
publishes on the bus.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from .policy import DestinationPolicy


class OutputState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    LIVE = "live"
    BACKOFF = "backoff"
    REJECTED = "rejected"
    DISABLED = "disabled"
    STOPPED = "stopped"


S = OutputState
_PAUSED = frozenset({S.BACKOFF, S.REJECTED})

ALLOWED: dict[OutputState, frozenset[OutputState]] = {
    S.IDLE: frozenset({S.CONNECTING, S.DISABLED, S.STOPPED}),
    S.CONNECTING: frozenset({S.LIVE, S.BACKOFF, S.REJECTED, S.DISABLED, S.STOPPED}),
    S.LIVE: frozenset({S.BACKOFF, S.REJECTED, S.DISABLED, S.STOPPED}),
    S.BACKOFF: frozenset({S.CONNECTING, S.STOPPED}),
    S.REJECTED: frozenset({S.CONNECTING, S.STOPPED}),
    S.DISABLED: frozenset({S.STOPPED}),
    S.STOPPED: frozenset(),
}


def check_transition(old: OutputState, new: OutputState) -> None:
    if new not in ALLOWED[old]:
        raise ValueError(f"output cannot go from {old.value} to {new.value}")


def backoff_delay(
    failures: int, first: float = 1.0, cap: float = 30.0, jitter: float = 0.0, spread: float = 0.25
) -> float:
    """Exponential backoff: first, 2*first, 4*first... capped; ``jitter`` in [0, 1) takes up to
    ``spread`` of the pause off, so destinations that failed together do not retry together."""
    base = min(cap, first * 2.0 ** min(63, max(0, failures - 1)))
    return float(base * (1.0 - spread * jitter))


# --- inputs ---


@dataclass(frozen=True, slots=True)
class Start:
    now: float


@dataclass(frozen=True, slots=True)
class Published:
    now: float


@dataclass(frozen=True, slots=True)
class Failed:
    """An attempt failed or a live connection was lost; ``rejected`` when the destination refused."""

    now: float
    error: str
    rejected: bool = False
    jitter: float = 0.0  # uniform in [0, 1) from the shell


@dataclass(frozen=True, slots=True)
class RetryDue:
    now: float


@dataclass(frozen=True, slots=True)
class Disable:
    """Desired state says the output was auto-disabled earlier (e.g. before a restart)."""

    now: float
    reason: str


@dataclass(frozen=True, slots=True)
class Stop:
    now: float


Input = Start | Published | Failed | RetryDue | Disable | Stop


# --- effects ---


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: OutputState
    new: OutputState
    reason: str


@dataclass(frozen=True, slots=True)
class Connect:
    """Start a connection attempt (the shell first waits for a reconnect slot)."""


@dataclass(frozen=True, slots=True)
class Attach:
    """Join the event's fan-out: media starts flowing to this destination."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """Leave the fan-out and close the connection; end the stream cleanly first when ``unpublish``."""

    unpublish: bool


@dataclass(frozen=True, slots=True)
class WaitRetry:
    delay_s: float


Effect = StateChanged | Connect | Attach | Disconnect | WaitRetry


class InvalidInput(ValueError):
    pass


class OutputMachine:
    def __init__(self, policy: DestinationPolicy, now: float) -> None:
        self.policy = policy
        self.state = S.IDLE
        self.since = now
        self.reason = "created"
        self.last_error = ""
        self.disabled_reason = ""
        self.connects = 0
        self.failures = 0
        self.consecutive_failures = 0  # of one kind, since a stable live period: drives the backoff
        self._streak_rejected = False  # the kind of the current streak: refusals or network failures
        self.retry_delay_s = 0.0
        self.retry_at = 0.0  # when the pending retry is due (0 when none)
        self._recent: deque[float] = deque()  # failure times within the disable window
        self._effects: list[Effect] = []

    def handle(self, event: Input) -> list[Effect]:
        self._effects = []
        if isinstance(event, Start):
            self._start(event)
        elif isinstance(event, Published):
            self._published(event)
        elif isinstance(event, Failed):
            self._failed(event)
        elif isinstance(event, RetryDue):
            self._retry_due(event)
        elif isinstance(event, Disable):
            self._disable(event)
        elif isinstance(event, Stop):
            self._stop(event)
        else:  # pragma: no cover - the Input union is closed
            raise TypeError(f"not an output input: {event!r}")
        return self._effects

    @property
    def recent_failures(self) -> int:
        return len(self._recent)

    # --- transitions ---

    def _expect(self, event: Input, *states: OutputState) -> None:
        if self.state not in states:
            name = type(event).__name__
            raise InvalidInput(f"output cannot handle {name} in state {self.state.value}")

    def _set_state(self, new: OutputState, now: float, reason: str) -> None:
        check_transition(self.state, new)
        self._effects.append(StateChanged(self.state, new, reason))
        self.state, self.since, self.reason = new, now, reason
        if new not in _PAUSED:
            self.retry_at = 0.0

    def _start(self, event: Start) -> None:
        self._expect(event, S.IDLE)
        self._set_state(S.CONNECTING, event.now, "started")
        self._effects.append(Connect())

    def _published(self, event: Published) -> None:
        self._expect(event, S.CONNECTING)
        self.connects += 1
        self._set_state(S.LIVE, event.now, "publishing")
        self._effects.append(Attach())

    def _failed(self, event: Failed) -> None:
        self._expect(event, S.CONNECTING, S.LIVE)
        was_live = self.state is S.LIVE
        if was_live and event.now - self.since >= self.policy.stable_after_s:
            self.consecutive_failures = 0  # it was fine for a while: start the backoff over
        if event.rejected != self._streak_rejected:
            # a refusal after network trouble (or the reverse) is a new problem: its own backoff
            self.consecutive_failures = 0
            self._streak_rejected = event.rejected
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = event.error
        self._effects.append(Disconnect(unpublish=False))
        p = self.policy
        self._recent.append(event.now)
        while self._recent and event.now - self._recent[0] > p.disable_window_s:
            self._recent.popleft()
        if p.disable_failures and len(self._recent) >= p.disable_failures:
            self.disabled_reason = (
                f"{len(self._recent)} failures within {p.disable_window_s / 60:g} min "
                f"(class {p.dest_class} limit {p.disable_failures}); last: {event.error}"
            )
            self._set_state(S.DISABLED, event.now, "auto-disabled: too many failures")
            return
        if event.rejected:
            first, cap, new = p.rejected_first_s, p.rejected_cap_s, S.REJECTED
            reason = "destination refused the publish"
        else:
            first, cap, new = p.retry_first_s, p.retry_cap_s, S.BACKOFF
            reason = "connection lost" if was_live else "connection failed"
        delay = backoff_delay(self.consecutive_failures, first, cap, event.jitter, p.jitter)
        self.retry_delay_s = delay
        self._set_state(new, event.now, reason)
        self.retry_at = event.now + delay
        self._effects.append(WaitRetry(delay))

    def _retry_due(self, event: RetryDue) -> None:
        self._expect(event, *_PAUSED)
        self._set_state(S.CONNECTING, event.now, "retrying")
        self._effects.append(Connect())

    def _disable(self, event: Disable) -> None:
        self._expect(event, S.IDLE)
        self.disabled_reason = event.reason
        self._set_state(S.DISABLED, event.now, "auto-disabled: too many failures")

    def _stop(self, event: Stop) -> None:
        if self.state is S.STOPPED:
            return  # teardown paths may stop twice
        if self.state in (S.CONNECTING, S.LIVE):
            self._effects.append(Disconnect(unpublish=self.state is S.LIVE))
        self._set_state(S.STOPPED, event.now, "stopped")
