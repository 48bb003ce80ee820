"""Which source is on air: the failover state machine of one event, pure.

``step(state, event, now) -> (state, effects)``: no NATS, no clock, no media. The shell feeds it what
happens to the inputs (a video packet arrived, a publisher disconnected, a content analyser found a
black picture), a tick every 100 ms so silence can be noticed, operator commands, and the moment a
decided switch reached the program; it carries out the effects (restart the timeline on another
source, start the slate, publish a FailoverEvent, answer a command).

An input is *healthy* while it delivers video (a packet within ``loss_timeout``, not disconnected) and
no enabled content trigger has held for its duration. The rules:

- The live input fails: switch at once to the best other healthy input (the primary first), else to
  the slate (after a disconnect, once ``loss_timeout`` has passed: an encoder may reconnect at once).
  Reason: ``disconnect``, ``loss``, ``black``, ``frozen`` or ``silence``. Unplanned: the shell starts
  the new input from its cached keyframe.
- On the slate (or before the program started), the first healthy input goes on air (``return``).
- With ``preference == "primary"``, the program goes back from a healthy backup to the primary once
  the primary has been healthy for ``stable_window_s`` and the last switch is at least that old, so a
  flapping primary causes at most one switch per window. Planned: at the primary's next keyframe.
- Locked to an input: only that input or the slate is ever on air.
- A manual switch goes to a healthy input at its next keyframe (``manual``); refused while locked.

A switch is *triggered* when decided and *activated* when the first program packet from the new source
went out; the FailoverEvent carries both, so activation time is measured, not assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from shared.messages import FailoverPolicy

SLATE = "slate"
RECENT_MAX = 10
ContentKind = Literal["black", "frozen", "silence"]
CONTENT_KINDS: tuple[ContentKind, ...] = ("black", "frozen", "silence")


# --- what the machine keeps ---


@dataclass(frozen=True)
class Track:
    """What the machine knows about one input."""

    input_id: str
    role: str
    last_packet: float | None = None  # last video packet (monotonic s)
    disconnected: bool = False
    healthy_since: float | None = None
    black_since: float | None = None  # the content analyser's current bad run, per kind
    frozen_since: float | None = None
    silence_since: float | None = None


@dataclass(frozen=True)
class Pending:
    """A switch decided but not yet on air."""

    from_source: str
    to_source: str
    reason: str
    planned: bool
    triggered_at: float


@dataclass(frozen=True)
class Switch:
    """A switch that took effect."""

    from_source: str
    to_source: str
    reason: str
    planned: bool
    triggered_at: float
    activated_at: float

    @property
    def activation_s(self) -> float:
        return self.activated_at - self.triggered_at


@dataclass(frozen=True)
class State:
    policy: FailoverPolicy
    tracks: tuple[Track, ...] = ()
    locked_input: str = ""
    started_at: float = 0.0
    target: str | None = None  # where the program should be: an input id or SLATE
    live: str | None = None  # what the program shows now
    pending: Pending | None = None
    last_switch_at: float | None = None
    recent: tuple[Switch, ...] = ()

    def track(self, input_id: str | None) -> Track | None:
        for t in self.tracks:
            if t.input_id == input_id:
                return t
        return None

    @property
    def mode(self) -> Literal["auto", "locked"]:
        return "locked" if self.track(self.locked_input) is not None else "auto"


def initial(
    policy: FailoverPolicy, inputs: tuple[tuple[str, str], ...], locked_input: str, now: float
) -> State:
    """A machine for inputs ``(id, role)`` that has seen nothing yet."""
    return State(
        policy=policy,
        tracks=tuple(Track(i, role) for i, role in inputs),
        locked_input=locked_input,
        started_at=now,
    )


def waiting(state: State) -> bool:
    """Nothing on air and no input has delivered video: only a packet can change this machine, so the
    clock need not tick (an event started ahead of its encoders costs nothing while it waits)."""
    return state.target is None and state.pending is None and all(t.last_packet is None for t in state.tracks)


# --- what happens to it ---


@dataclass(frozen=True)
class Configure:
    """Desired state changed: inputs, policy, lock."""

    inputs: tuple[tuple[str, str], ...]
    policy: FailoverPolicy
    locked_input: str


@dataclass(frozen=True)
class Packet:
    input_id: str


@dataclass(frozen=True)
class Disconnected:
    input_id: str


@dataclass(frozen=True)
class Content:
    """A content analyser's verdict on one sample of an input."""

    input_id: str
    kind: ContentKind
    bad: bool


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class Activated:
    """The first program packet from ``source`` went out."""

    source: str


@dataclass(frozen=True)
class ManualSwitch:
    input_id: str


Event = Configure | Packet | Disconnected | Content | Tick | Activated | ManualSwitch


# --- what the shell must do ---


@dataclass(frozen=True)
class SwitchTo:
    """Put ``source`` on air: at its next keyframe when planned, else from its cached keyframe."""

    source: str
    reason: str
    planned: bool


@dataclass(frozen=True)
class Announce:
    switch: Switch


@dataclass(frozen=True)
class Reply:
    ok: bool
    code: str = ""
    message: str = ""


Effect = SwitchTo | Announce | Reply


# --- health ---


def problem(track: Track, policy: FailoverPolicy, now: float) -> str | None:
    """Why ``track`` cannot be on air right now, or None when it is healthy."""
    if track.disconnected:
        return "disconnect"
    if track.last_packet is None or now - track.last_packet >= policy.loss_timeout_ms / 1000:
        return "loss"
    for kind, since, limit in (
        ("black", track.black_since, policy.black_s),
        ("frozen", track.frozen_since, policy.frozen_s),
        ("silence", track.silence_since, policy.silence_s),
    ):
        if limit > 0 and since is not None and now - since >= limit:
            return kind
    return None


def healthy(state: State, input_id: str | None, now: float) -> bool:
    track = state.track(input_id)
    return track is not None and problem(track, state.policy, now) is None


def clean_for(track: Track, policy: FailoverPolicy, now: float) -> float:
    """How long ``track`` has been healthy without a break (0 when it is not)."""
    if track.healthy_since is None or problem(track, policy, now) is not None:
        return 0.0
    return now - track.healthy_since


def _refresh(state: State, now: float) -> State:
    """Start or break each input's healthy run."""
    tracks = []
    changed = False
    for t in state.tracks:
        ok = problem(t, state.policy, now) is None
        if ok and t.healthy_since is None:
            t = replace(t, healthy_since=now)
            changed = True
        elif not ok and t.healthy_since is not None:
            t = replace(t, healthy_since=None)
            changed = True
        tracks.append(t)
    return replace(state, tracks=tuple(tracks)) if changed else state


def _with_track(state: State, track: Track) -> State:
    return replace(state, tracks=tuple(track if t.input_id == track.input_id else t for t in state.tracks))


# --- the machine ---


def step(state: State, event: Event, now: float) -> tuple[State, list[Effect]]:
    effects: list[Effect] = []
    if isinstance(event, Packet):
        track = state.track(event.input_id)
        if track is None:
            return state, effects
        state = _with_track(state, replace(track, last_packet=now, disconnected=False))
    elif isinstance(event, Disconnected):
        track = state.track(event.input_id)
        if track is None:
            return state, effects
        state = _with_track(state, replace(track, disconnected=True))
    elif isinstance(event, Content):
        track = state.track(event.input_id)
        if track is None:
            return state, effects
        state = _with_track(state, _content(track, event.kind, event.bad, now))
    elif isinstance(event, Configure):
        state = _configure(state, event)
    elif isinstance(event, Activated):
        state, effects = _activated(state, event.source, now)
    elif isinstance(event, ManualSwitch):
        state = _refresh(state, now)
        return _manual(state, event.input_id, now)
    state = _refresh(state, now)
    state, decided = _decide(state, now)
    return state, effects + decided


def _content(track: Track, kind: ContentKind, bad: bool, now: float) -> Track:
    """A bad sample starts a run (kept from its first sample); a good one ends it."""
    since = {"black": track.black_since, "frozen": track.frozen_since, "silence": track.silence_since}[kind]
    value = (since if since is not None else now) if bad else None
    if kind == "black":
        return replace(track, black_since=value)
    if kind == "frozen":
        return replace(track, frozen_since=value)
    return replace(track, silence_since=value)


def _configure(state: State, event: Configure) -> State:
    known = {t.input_id: t for t in state.tracks}
    policy = event.policy
    tracks = tuple(
        # a trigger turned off forgets what it saw: turned on again, it starts afresh
        replace(
            known.get(i, Track(i, role)),
            role=role,
            black_since=known[i].black_since if i in known and policy.black_s else None,
            frozen_since=known[i].frozen_since if i in known and policy.frozen_s else None,
            silence_since=known[i].silence_since if i in known and policy.silence_s else None,
        )
        for i, role in event.inputs
    )
    return replace(state, tracks=tracks, policy=policy, locked_input=event.locked_input)


def _activated(state: State, source: str, now: float) -> tuple[State, list[Effect]]:
    pending = state.pending
    if pending is None or pending.to_source != source:
        return replace(state, live=source), []
    state = replace(state, live=source, pending=None)
    if not pending.from_source:
        return state, []  # the program's first source: not a switch
    switch = Switch(pending.from_source, source, pending.reason, pending.planned, pending.triggered_at, now)
    return replace(state, recent=(*state.recent, switch)[-RECENT_MAX:]), [Announce(switch)]


def _switch(state: State, to: str, reason: str, planned: bool, now: float) -> tuple[State, list[Effect]]:
    if to == state.live:  # back to what is on air: cancel the pending switch
        return replace(state, target=to, pending=None), [SwitchTo(to, reason, True)]
    pending = Pending(state.live or "", to, reason, planned, now)
    state = replace(state, target=to, pending=pending, last_switch_at=now)
    return state, [SwitchTo(to, reason, planned)]


def _failure(state: State, source: str | None, now: float) -> str:
    """Why the program leaves ``source`` (an input that failed, or the slate)."""
    if source == SLATE:
        return "return"
    track = state.track(source)
    if track is None:
        return "manual"  # the input was deleted
    return problem(track, state.policy, now) or "manual"


def _decide(state: State, now: float) -> tuple[State, list[Effect]]:
    if state.mode == "locked":
        return _decide_locked(state, now)
    current = state.target
    if current is not None and current != SLATE and healthy(state, current, now):
        return _maybe_return(state, now)
    candidates = [
        t.input_id
        for t in sorted(state.tracks, key=lambda t: t.role != "primary")
        if t.input_id != current and problem(t, state.policy, now) is None
    ]
    if current is None:  # not started: the primary, or any input once the primary had its chance
        grace_over = now - state.started_at >= state.policy.loss_timeout_ms / 1000
        primary = next((t for t in state.tracks if t.role == "primary"), None)
        if candidates and (grace_over or candidates[0] == getattr(primary, "input_id", None)):
            return _switch(state, candidates[0], "return", False, now)
        return state, []
    if candidates:
        return _switch(state, candidates[0], _failure(state, current, now), False, now)
    if current != SLATE and not _may_come_back(state, current, now):
        return _switch(state, SLATE, _failure(state, current, now), False, now)
    return state, []


def _may_come_back(state: State, source: str | None, now: float) -> bool:
    """A publisher that just dropped its connection may reconnect at once (an encoder's blip): with
    nothing else to go to, the slate waits ``loss_timeout`` after its last packet."""
    track = state.track(source)
    if track is None or not track.disconnected or track.last_packet is None:
        return False
    return now - track.last_packet < state.policy.loss_timeout_ms / 1000


def _maybe_return(state: State, now: float) -> tuple[State, list[Effect]]:
    policy = state.policy
    current = state.track(state.target)
    if policy.preference != "primary" or current is None or current.role == "primary":
        return state, []
    primary = next((t for t in state.tracks if t.role == "primary"), None)
    window = policy.stable_window_s
    if primary is None or clean_for(primary, policy, now) < window:
        return state, []
    if state.last_switch_at is not None and now - state.last_switch_at < window:
        return state, []
    return _switch(state, primary.input_id, "return", True, now)


def _decide_locked(state: State, now: float) -> tuple[State, list[Effect]]:
    locked, current = state.locked_input, state.target
    if healthy(state, locked, now):
        if current == locked:
            return state, []
        if current is None:
            return _switch(state, locked, "return", False, now)
        if healthy(state, current, now):
            return _switch(state, locked, "manual", True, now)  # the lock moved the program
        return _switch(state, locked, _failure(state, current, now), False, now)
    if current is None or current == SLATE or _may_come_back(state, current, now):
        return state, []
    reason = "manual" if healthy(state, current, now) else _failure(state, current, now)
    return _switch(state, SLATE, reason, False, now)


def _manual(state: State, input_id: str, now: float) -> tuple[State, list[Effect]]:
    track = state.track(input_id)
    if track is None:
        return state, [Reply(False, "unknown_input", f"{input_id} is not an input of this event")]
    if state.mode == "locked" and input_id != state.locked_input:
        return state, [
            Reply(False, "locked", f"the event is locked to {state.locked_input}: unlock it first")
        ]
    reason = problem(track, state.policy, now)
    if reason is not None:
        return state, [Reply(False, "not_delivering", f"{input_id} cannot go on air ({reason})")]
    if state.target == input_id:
        return state, [Reply(True, message="already on air")]
    state, effects = _switch(state, input_id, "manual", state.live is not None, now)
    return state, [*effects, Reply(True, message="switching at the next keyframe")]
