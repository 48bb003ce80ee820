"""The failover state machine, table-driven: scripted inputs over time -> the switches it makes.

A small simulator stands in for the shell: inputs deliver a video packet every 100 ms while they are
"on", a tick runs every 100 ms, and a decided switch is activated at the new source's next packet
(the slate activates at once), the way ``event_router`` reports ``Activated``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import msgspec
import pytest

from services.router import failover as fo
from services.router.failover import SLATE
from shared.messages import FailoverPolicy

P, B = "in_p", "in_b"
INPUTS = ((P, "primary"), (B, "backup"))
STEP = 0.1
# loss 1 s, window 3 s unless a case says otherwise
BASE = FailoverPolicy(loss_timeout_ms=1000, stable_window_s=3.0)


@dataclass
class Sim:
    policy: FailoverPolicy = BASE
    locked: str = ""
    state: fo.State = field(init=False)
    switches: list[fo.Switch] = field(default_factory=list)
    replies: list[fo.Reply] = field(default_factory=list)
    decided: list[tuple[float, fo.SwitchTo]] = field(default_factory=list)
    waiting: str | None = None  # a decided switch waiting for its source's next packet

    def __post_init__(self) -> None:
        self.state = fo.initial(self.policy, INPUTS, self.locked, 0.0)

    def send(self, event: fo.Event, now: float) -> None:
        self.state, effects = fo.step(self.state, event, now)
        for effect in effects:
            if isinstance(effect, fo.SwitchTo):
                self.decided.append((now, effect))
                self.waiting = effect.source
                if effect.source == SLATE or effect.source == self.state.live:
                    self.waiting = None
                    if effect.source != self.state.live:
                        self.send(fo.Activated(SLATE), now)
            elif isinstance(effect, fo.Announce):
                self.switches.append(effect.switch)
            elif isinstance(effect, fo.Reply):
                self.replies.append(effect)

    def packet(self, source: str, now: float) -> None:
        self.send(fo.Packet(source), now)
        if self.waiting == source:
            self.waiting = None
            self.send(fo.Activated(source), now)


def run(script: list[tuple[Any, ...]], until: float, policy: FailoverPolicy = BASE, locked: str = "") -> Sim:
    """Script lines: ("on", input, t0, t1) delivers packets in [t0, t1); ("drop", input, t) disconnects;
    ("bad", input, kind, t0, t1) a content analyser reports bad in [t0, t1) and good otherwise while on;
    ("lock", input, t), ("unlock", t), ("manual", input, t), ("policy", FailoverPolicy, t)."""
    sim = Sim(policy, locked)
    steps = round(until / STEP)
    for n in range(steps + 1):
        now = round(n * STEP, 3)
        for line in script:
            kind = line[0]
            if kind == "drop" and abs(line[2] - now) < 1e-6:
                sim.send(fo.Disconnected(line[1]), now)
            elif kind == "lock" and abs(line[2] - now) < 1e-6:
                sim.send(fo.Configure(INPUTS, sim.state.policy, line[1]), now)
            elif kind == "unlock" and abs(line[1] - now) < 1e-6:
                sim.send(fo.Configure(INPUTS, sim.state.policy, ""), now)
            elif kind == "policy" and abs(line[2] - now) < 1e-6:
                sim.send(fo.Configure(INPUTS, line[1], sim.state.locked_input), now)
            elif kind == "manual" and abs(line[2] - now) < 1e-6:
                sim.send(fo.ManualSwitch(line[1]), now)
        for line in script:
            if line[0] == "on" and line[2] <= now < line[3]:
                sim.packet(line[1], now)
        for line in script:
            if line[0] == "bad":
                _, source, what, t0, t1 = line
                on = any(x[0] == "on" and x[1] == source and x[2] <= now < x[3] for x in script)
                if on:
                    sim.send(fo.Content(source, what, t0 <= now < t1), now)
        sim.send(fo.Tick(), now)
    return sim


def summary(sim: Sim) -> list[tuple[str, str, str, float]]:
    return [(s.from_source, s.to_source, s.reason, round(s.triggered_at, 1)) for s in sim.switches]


CASES: list[tuple[str, dict[str, Any], list[tuple[Any, ...]], float, list[tuple[str, str, str, float]]]] = [
    ("both deliver: the primary goes on air, no switch", {}, [("on", P, 0, 9), ("on", B, 0, 9)], 8, []),
    ("primary disconnects: at once, to the backup", {},
     [("on", P, 0, 3), ("drop", P, 3.0), ("on", B, 0, 9)], 8, [(P, B, "disconnect", 3.0)]),
    ("primary silent but connected: after loss_timeout", {},
     [("on", P, 0, 3), ("on", B, 0, 9)], 6, [(P, B, "loss", 3.9)]),
    ("loss_timeout 500 ms", {"loss_timeout_ms": 500},
     [("on", P, 0, 3), ("on", B, 0, 9)], 6, [(P, B, "loss", 3.4)]),
    ("loss_timeout 2000 ms", {"loss_timeout_ms": 2000},
     [("on", P, 0, 3), ("on", B, 0, 9)], 6, [(P, B, "loss", 4.9)]),
    ("a gap shorter than loss_timeout is no loss", {},
     [("on", P, 0, 3), ("on", P, 3.8, 9), ("on", B, 0, 9)], 8, []),
    ("primary returns: back only after the stable window, planned", {},
     [("on", P, 0, 2), ("drop", P, 2.0), ("on", P, 4, 20), ("on", B, 0, 20)], 12,
     [(P, B, "disconnect", 2.0), (B, P, "return", 7.0)]),
    ("stable window 10 s", {"stable_window_s": 10.0},
     [("on", P, 0, 2), ("drop", P, 2.0), ("on", P, 4, 20), ("on", B, 0, 20)], 16,
     [(P, B, "disconnect", 2.0), (B, P, "return", 14.0)]),
    ("preference equal: stays on the backup", {"preference": "equal"},
     [("on", P, 0, 2), ("drop", P, 2.0), ("on", P, 4, 20), ("on", B, 0, 20)], 15,
     [(P, B, "disconnect", 2.0)]),
    ("flapping primary (1 s on, 1 s off): one switch, then a return once it is stable", {},
     [("on", P, 0, 2), ("drop", P, 2.0), ("on", P, 3, 4), ("drop", P, 4.0), ("on", P, 5, 6), ("drop", P, 6.0),
      ("on", P, 7, 8), ("drop", P, 8.0), ("on", P, 9, 30), ("on", B, 0, 30)], 14,
     [(P, B, "disconnect", 2.0), (B, P, "return", 12.0)]),
    ("both lost: the slate (a loss timeout after the drop); the backup returns: back on air", {},
     [("on", P, 0, 2), ("drop", P, 2.0), ("on", B, 0, 3), ("drop", B, 3.0), ("on", B, 6, 9)], 8,
     [(P, B, "disconnect", 2.0), (B, SLATE, "disconnect", 3.9), (SLATE, B, "return", 6.0)]),
    ("the only publisher drops and reconnects within the loss timeout: no slate", {},
     [("on", P, 0, 2), ("drop", P, 2.0), ("on", P, 2.5, 9)], 8, []),
    ("both silent: the slate after loss_timeout", {},
     [("on", P, 0, 2), ("on", B, 0, 2)], 5, [(P, SLATE, "loss", 2.9)]),
    ("the backup fails: back to a primary that is not yet stable (anything beats the slate)", {},
     [("on", P, 0, 2), ("drop", P, 2.0), ("on", P, 4, 9), ("on", B, 0, 5), ("drop", B, 5.0)], 8,
     [(P, B, "disconnect", 2.0), (B, P, "disconnect", 5.0)]),
    ("backup only: on air once the primary had loss_timeout to show up", {},
     [("on", B, 0, 5)], 4, []),
    ("black picture for black_s: switch", {"black_s": 2.0},
     [("on", P, 0, 9), ("bad", P, "black", 3, 9), ("on", B, 0, 9)], 8, [(P, B, "black", 5.0)]),
    ("black shorter than black_s: no switch", {"black_s": 2.0},
     [("on", P, 0, 9), ("bad", P, "black", 3, 4.5), ("on", B, 0, 9)], 8, []),
    ("black trigger off: no switch", {},
     [("on", P, 0, 9), ("bad", P, "black", 3, 9), ("on", B, 0, 9)], 8, []),
    ("frozen picture for frozen_s: switch", {"frozen_s": 1.0},
     [("on", P, 0, 9), ("bad", P, "frozen", 3, 9), ("on", B, 0, 9)], 8, [(P, B, "frozen", 4.0)]),
    ("silence for silence_s: switch", {"silence_s": 3.0},
     [("on", P, 0, 9), ("bad", P, "silence", 2, 9), ("on", B, 0, 9)], 8, [(P, B, "silence", 5.0)]),
    ("a black backup is not a way out: the slate", {"black_s": 1.0},
     [("on", P, 0, 9), ("bad", P, "black", 3, 9), ("on", B, 0, 9), ("bad", B, "black", 0, 9)], 8,
     [(P, SLATE, "black", 4.0)]),
    ("the primary's picture comes back: return after the stable window", {"black_s": 1.0},
     [("on", P, 0, 20), ("bad", P, "black", 2, 5), ("on", B, 0, 20)], 12,
     [(P, B, "black", 3.0), (B, P, "return", 8.0)]),
    ("lock to the backup: a planned manual switch", {},
     [("on", P, 0, 9), ("on", B, 0, 9), ("lock", B, 2.0)], 5, [(P, B, "manual", 2.0)]),
    ("locked backup lost: the slate, never the primary; unlock: the primary", {},
     [("on", P, 0, 20), ("on", B, 0, 4), ("drop", B, 4.0), ("lock", B, 2.0), ("unlock", 8.0)], 10,
     [(P, B, "manual", 2.0), (B, SLATE, "disconnect", 4.9), (SLATE, P, "return", 8.0)]),
    ("locked input comes back: on air again", {},
     [("on", P, 0, 20), ("on", B, 0, 4), ("drop", B, 4.0), ("on", B, 6, 20), ("lock", B, 2.0)], 10,
     [(P, B, "manual", 2.0), (B, SLATE, "disconnect", 4.9), (SLATE, B, "return", 6.0)]),
    ("manual switch: planned, then back to the primary after the window", {},
     [("on", P, 0, 20), ("on", B, 0, 20), ("manual", B, 2.0)], 8, [(P, B, "manual", 2.0), (B, P, "return", 5.0)]),
    ("manual switch with preference equal: stays", {"preference": "equal"},
     [("on", P, 0, 20), ("on", B, 0, 20), ("manual", B, 2.0)], 8, [(P, B, "manual", 2.0)]),
    ("policy change at run time: a shorter loss timeout applies at once", {},
     [("on", P, 0, 3), ("on", B, 0, 9), ("policy", msgspec.structs.replace(BASE, loss_timeout_ms=500), 1.0)], 6,
     [(P, B, "loss", 3.4)]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "policy", "script", "until", "expected"), CASES, ids=[c[0] for c in CASES])
def test_switches(
    name: str,
    policy: dict[str, Any],
    script: list[tuple[Any, ...]],
    until: float,
    expected: list[tuple[str, str, str, float]],
) -> None:
    sim = run(script, until, msgspec.structs.replace(BASE, **policy))
    assert summary(sim) == expected


def test_backup_only_goes_on_air_after_the_startup_grace() -> None:
    sim = run([("on", B, 0, 5)], 4)
    assert sim.decided[0][1] == fo.SwitchTo(B, "return", False)
    assert sim.decided[0][0] == pytest.approx(1.0)
    assert sim.state.live == B


def test_planned_and_unplanned() -> None:
    sim = run([("on", P, 0, 2), ("drop", P, 2.0), ("on", P, 4, 20), ("on", B, 0, 20)], 12)
    assert [s.planned for s in sim.switches] == [False, True]
    decided = [effect for _, effect in sim.decided]
    assert decided[1:] == [fo.SwitchTo(B, "disconnect", False), fo.SwitchTo(P, "return", True)]


def test_activation_time_runs_from_trigger_to_the_first_program_packet() -> None:
    state = fo.initial(BASE, INPUTS, "", 0.0)
    state, _ = fo.step(state, fo.Packet(P), 0.0)
    state, _ = fo.step(state, fo.Activated(P), 0.0)
    state, _ = fo.step(state, fo.Packet(B), 0.5)
    state, effects = fo.step(state, fo.Disconnected(P), 1.0)
    assert effects == [fo.SwitchTo(B, "disconnect", False)]
    assert state.live == P and state.pending is not None
    state, _ = fo.step(state, fo.Packet(B), 1.2)
    state, effects = fo.step(state, fo.Activated(B), 1.25)
    (announce,) = effects
    assert isinstance(announce, fo.Announce)
    assert announce.switch.activation_s == pytest.approx(0.25)
    assert state.live == B and state.pending is None and state.recent == (announce.switch,)


@pytest.mark.parametrize(
    ("locked", "script_target", "at", "expected"),
    [
        ("", B, 2.0, fo.Reply(True, message="switching at the next keyframe")),
        ("", P, 2.0, fo.Reply(True, message="already on air")),
        (P, B, 2.0, fo.Reply(False, "locked", f"the event is locked to {P}: unlock it first")),
        ("", "in_nope", 2.0, fo.Reply(False, "unknown_input", "in_nope is not an input of this event")),
        ("", B, 6.0, fo.Reply(False, "not_delivering", f"{B} cannot go on air (loss)")),
    ],
)
def test_manual_switch_replies(locked: str, script_target: str, at: float, expected: fo.Reply) -> None:
    sim = run([("on", P, 0, 9), ("on", B, 0, 4), ("manual", script_target, at)], at + 0.5, locked=locked)
    assert sim.replies == [expected]


def test_at_most_one_switch_per_stable_window_whatever_the_flapping() -> None:
    # the primary flaps for a minute with every on/off period from 0.5 s to 2.5 s
    script: list[tuple[Any, ...]] = [("on", B, 0, 100)]
    t = 0.0
    on = 1.0
    while t < 60:
        script += [("on", P, round(t, 1), round(t + on, 1)), ("drop", P, round(t + on, 1))]
        t += 2 * on
        on = 0.5 if on >= 2.5 else on + 0.5
    sim = run(script, 62)
    triggers = [s.triggered_at for s in sim.switches]
    assert triggers, "the first loss of the primary must switch"
    returns = [s for s in sim.switches if s.reason == "return"]
    assert not returns, "a primary never stable for the window must not come back"


def test_configure_keeps_what_it_knows_and_drops_deleted_inputs() -> None:
    sim = run([("on", P, 0, 3), ("on", B, 0, 3)], 2)
    assert sim.state.live == P
    state, effects = fo.step(sim.state, fo.Configure(((B, "backup"),), BASE, ""), 2.05)
    assert [t.input_id for t in state.tracks] == [B]
    assert state.tracks[0].last_packet == pytest.approx(2.0)
    assert effects == [fo.SwitchTo(B, "manual", False)]


def test_status_helpers() -> None:
    sim = run([("on", P, 0, 9), ("on", B, 0, 9)], 5)
    primary = sim.state.track(P)
    assert primary is not None
    assert fo.problem(primary, BASE, 5.0) is None
    assert fo.clean_for(primary, BASE, 5.0) == pytest.approx(5.0)
    assert fo.problem(primary, BASE, 10.0) == "loss"
    assert fo.clean_for(primary, BASE, 10.0) == 0.0
    assert sim.state.mode == "auto"
    assert replace(sim.state, locked_input=B).mode == "locked"
    assert replace(sim.state, locked_input="in_gone").mode == "auto"


def test_a_trigger_turned_off_and_on_again_starts_afresh() -> None:
    policy = msgspec.structs.replace(BASE, black_s=2.0)
    sim = run([("on", P, 0, 9), ("bad", P, "black", 1, 9), ("on", B, 0, 9)], 1.5, policy)
    assert sim.state.track(P).black_since == pytest.approx(1.0)  # type: ignore[union-attr]
    state, _ = fo.step(sim.state, fo.Configure(INPUTS, BASE, ""), 1.6)
    state, effects = fo.step(state, fo.Configure(INPUTS, policy, ""), 1.7)
    assert effects == [] and state.track(P).black_since is None  # type: ignore[union-attr]


@pytest.mark.parametrize("locked", ["", P, B])
def test_a_waiting_machine_is_unchanged_by_the_clock_until_video_arrives(locked: str) -> None:
    # the router parks its clock while `waiting` holds: no tick, however late, may change such a machine
    state = fo.initial(BASE, INPUTS, locked, 0.0)
    assert fo.waiting(state)
    for now in (0.1, 0.9, 1.0, 3.0, 60.0, 86_400.0):
        after, effects = fo.step(state, fo.Tick(), now)
        assert (after, effects) == (state, [])
    # a disconnect or a manual switch does not wake it either, and it stays waiting
    state, _ = fo.step(state, fo.Disconnected(B), 5.0)
    state, effects = fo.step(state, fo.ManualSwitch(P), 5.0)
    assert fo.waiting(state)
    assert [(type(e), getattr(e, "ok", None)) for e in effects] == [(fo.Reply, False)]  # refused
    # the first video packet ends the wait: from here on the clock decides (loss, windows, grace)
    state, _ = fo.step(state, fo.Packet(B), 6.0)
    assert not fo.waiting(state)
    sim = run([("on", B, 0, 0.5)], 5)  # the backup alone, then silent: it goes on air, then to the slate
    assert not fo.waiting(sim.state) and sim.state.target == SLATE
