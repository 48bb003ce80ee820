"""The output state machine, table-driven: (state, input, now) -> (state, effects)."""

from __future__ import annotations

import dataclasses

import pytest

from services.output.policy import CLASSES
from services.output.state import (
    ALLOWED,
    Attach,
    Connect,
    Disable,
    Disconnect,
    Failed,
    InvalidInput,
    OutputMachine,
    OutputState,
    Published,
    RetryDue,
    Start,
    StateChanged,
    Stop,
    WaitRetry,
    backoff_delay,
    check_transition,
)

S = OutputState
B = CLASSES["B"]  # retry 1 s..30 s, rejected 10 s..120 s, 10 failures in 5 min, stable after 30 s


def machine_in(state: OutputState, now: float = 100.0) -> OutputMachine:
    """A class B machine brought to ``state`` through real inputs (at ``now``)."""
    m = OutputMachine(B, now)
    paths: dict[OutputState, list[object]] = {
        S.IDLE: [],
        S.CONNECTING: [Start(now)],
        S.LIVE: [Start(now), Published(now)],
        S.BACKOFF: [Start(now), Failed(now, "ECONNREFUSED")],
        S.REJECTED: [Start(now), Failed(now, "BadName", rejected=True)],
        S.DISABLED: [Disable(now, "earlier")],
        S.STOPPED: [Stop(now)],
    }
    for event in paths[state]:
        m.handle(event)  # type: ignore[arg-type]
    assert m.state is state
    return m


def kinds(effects: list[object]) -> list[str]:
    out = []
    for e in effects:
        if isinstance(e, StateChanged):
            out.append(f"->{e.new.value}")
        elif isinstance(e, Disconnect):
            out.append("disconnect+unpublish" if e.unpublish else "disconnect")
        else:
            out.append(type(e).__name__.lower())
    return out


T = 100.0

TABLE = [
    # (from, input, to, effects)
    (S.IDLE, Start(T), S.CONNECTING, ["->connecting", "connect"]),
    (S.IDLE, Disable(T, "persisted"), S.DISABLED, ["->disabled"]),
    (S.IDLE, Stop(T), S.STOPPED, ["->stopped"]),
    (S.CONNECTING, Published(T + 1), S.LIVE, ["->live", "attach"]),
    (S.CONNECTING, Failed(T + 1, "refused"), S.BACKOFF, ["disconnect", "->backoff", "waitretry"]),
    (
        S.CONNECTING,
        Failed(T + 1, "BadName", rejected=True),
        S.REJECTED,
        ["disconnect", "->rejected", "waitretry"],
    ),
    (S.CONNECTING, Stop(T + 1), S.STOPPED, ["disconnect", "->stopped"]),
    (S.LIVE, Failed(T + 5, "reset"), S.BACKOFF, ["disconnect", "->backoff", "waitretry"]),
    (
        S.LIVE,
        Failed(T + 5, "error status", rejected=True),
        S.REJECTED,
        ["disconnect", "->rejected", "waitretry"],
    ),
    (S.LIVE, Stop(T + 5), S.STOPPED, ["disconnect+unpublish", "->stopped"]),
    (S.BACKOFF, RetryDue(T + 1), S.CONNECTING, ["->connecting", "connect"]),
    (S.BACKOFF, Stop(T + 1), S.STOPPED, ["->stopped"]),
    (S.REJECTED, RetryDue(T + 10), S.CONNECTING, ["->connecting", "connect"]),
    (S.REJECTED, Stop(T + 1), S.STOPPED, ["->stopped"]),
    (S.DISABLED, Stop(T + 1), S.STOPPED, ["->stopped"]),
    (S.STOPPED, Stop(T + 1), S.STOPPED, []),
]


@pytest.mark.parametrize(("old", "event", "new", "effects"), TABLE)
def test_transition_table(old: OutputState, event: object, new: OutputState, effects: list[str]) -> None:
    m = machine_in(old)
    out = m.handle(event)  # type: ignore[arg-type]
    assert m.state is new
    assert kinds(out) == effects
    for e in out:
        if isinstance(e, StateChanged):
            assert e.old is old and e.reason == m.reason and e.reason


INVALID = [
    (S.IDLE, Published(T)),
    (S.IDLE, RetryDue(T)),
    (S.IDLE, Failed(T, "x")),
    (S.CONNECTING, Start(T)),
    (S.CONNECTING, RetryDue(T)),
    (S.LIVE, Published(T)),
    (S.LIVE, RetryDue(T)),
    (S.BACKOFF, Published(T)),
    (S.BACKOFF, Failed(T, "x")),
    (S.REJECTED, Start(T)),
    (S.DISABLED, Start(T)),
    (S.DISABLED, RetryDue(T)),
    (S.STOPPED, Start(T)),
    (S.STOPPED, Failed(T, "x")),
    (S.LIVE, Disable(T, "x")),
]


@pytest.mark.parametrize(("old", "event"), INVALID)
def test_inputs_that_make_no_sense_in_a_state_are_errors(old: OutputState, event: object) -> None:
    m = machine_in(old)
    with pytest.raises(InvalidInput, match=f"in state {old.value}"):
        m.handle(event)  # type: ignore[arg-type]
    assert m.state is old


@pytest.mark.parametrize(("old", "new"), [(o, n) for o in S for n in S if n not in ALLOWED[o]])
def test_check_transition_refuses_everything_not_in_the_table(old: OutputState, new: OutputState) -> None:
    with pytest.raises(ValueError, match=f"from {old.value} to {new.value}"):
        check_transition(old, new)


def test_network_retries_start_within_3_s_and_double_to_the_cap_with_jitter() -> None:
    m = machine_in(S.CONNECTING, now=0.0)
    delays = []
    now = 0.0
    for i in range(8):
        out = m.handle(Failed(now, "refused", jitter=0.0 if i % 2 else 0.999))
        wait = [e for e in out if isinstance(e, WaitRetry)]
        assert len(wait) == 1 and wait[0].delay_s == m.retry_delay_s
        assert m.retry_at == pytest.approx(now + m.retry_delay_s)
        delays.append(m.retry_delay_s)
        now += m.retry_delay_s
        m.handle(RetryDue(now))
    assert delays[0] <= 3.0
    bases = [1, 2, 4, 8, 16, 30, 30, 30]
    for d, base, i in zip(delays, bases, range(8), strict=True):
        if i % 2:
            assert d == base  # no jitter: the base
        else:
            assert base * 0.75 <= d < base * 0.7503  # jitter takes up to a quarter off
    assert m.consecutive_failures == 8 and m.failures == 8


def test_a_refused_publish_retries_more_slowly_than_a_network_failure() -> None:
    net = machine_in(S.CONNECTING)
    net.handle(Failed(T, "refused"))
    rej = machine_in(S.CONNECTING)
    rej.handle(Failed(T, "NetStream.Publish.BadName", rejected=True))
    assert rej.state is S.REJECTED and net.state is S.BACKOFF
    assert rej.retry_delay_s == B.rejected_first_s > 3 * net.retry_delay_s
    assert rej.reason == "destination refused the publish"
    assert rej.last_error == "NetStream.Publish.BadName"


def test_refusals_and_network_failures_back_off_separately() -> None:
    m = machine_in(S.CONNECTING, now=0.0)
    for _ in range(4):  # 1, 2, 4, 8 s
        m.handle(Failed(m.since, "no answer"))
        m.handle(RetryDue(m.retry_at))
    assert m.retry_delay_s == 8.0
    # the destination is back but still holds our old session: "name in use" starts its own backoff
    m.handle(Failed(m.since, "NetStream.Publish.BadName: Already publishing", rejected=True))
    assert m.state is S.REJECTED and m.retry_delay_s == B.rejected_first_s and m.consecutive_failures == 1
    m.handle(RetryDue(m.retry_at))
    m.handle(Failed(m.since, "refused"))
    assert m.retry_delay_s == B.retry_first_s and m.failures == 6


def test_a_stable_live_period_starts_the_backoff_over() -> None:
    m = machine_in(S.CONNECTING, now=0.0)
    now = 0.0
    for _ in range(3):
        m.handle(Failed(now, "refused"))
        now = m.retry_at
        m.handle(RetryDue(now))
    m.handle(Published(now))
    m.handle(Failed(now + 5, "reset"))  # lived 5 s: not stable, the backoff keeps growing
    assert m.retry_delay_s == 8.0 and m.reason == "connection lost"
    m.handle(RetryDue(m.retry_at))
    m.handle(Published(m.since))
    m.handle(Failed(m.since + B.stable_after_s, "reset"))  # stable: back to the first pause
    assert m.retry_delay_s == 1.0 and m.consecutive_failures == 1
    assert m.connects == 2 and m.failures == 5


def test_auto_disable_after_n_failures_within_the_window_and_not_spread_wider() -> None:
    policy = dataclasses.replace(B, disable_failures=3, disable_window_s=60.0)
    # three failures 40 s apart never have three inside one minute
    slow = OutputMachine(policy, 0.0)
    slow.handle(Start(0.0))
    for i in range(5):
        slow.handle(Failed(i * 40.0, "refused"))
        assert slow.state is S.BACKOFF
        slow.handle(RetryDue(i * 40.0 + 35))
    # three within a minute: disabled, no retry, connection closed
    fast = OutputMachine(policy, 0.0)
    fast.handle(Start(0.0))
    out: list[object] = []
    for t in (0.0, 2.0, 5.0):
        out = fast.handle(Failed(t, "refused"))  # type: ignore[assignment]
        if fast.state is S.BACKOFF:
            fast.handle(RetryDue(fast.retry_at))
    assert fast.state is S.DISABLED
    assert kinds(out) == ["disconnect", "->disabled"]
    assert "3 failures within 1 min" in fast.disabled_reason and "refused" in fast.disabled_reason
    assert fast.retry_at == 0.0
    with pytest.raises(InvalidInput):
        fast.handle(RetryDue(100.0))
    fast.handle(Stop(100.0))
    assert fast.state is S.STOPPED


def test_rejections_count_toward_auto_disable_too() -> None:
    policy = dataclasses.replace(B, disable_failures=2, disable_window_s=600.0)
    m = OutputMachine(policy, 0.0)
    m.handle(Start(0.0))
    m.handle(Failed(0.0, "BadName", rejected=True))
    m.handle(RetryDue(m.retry_at))
    m.handle(Failed(m.retry_at + 1, "BadName", rejected=True))
    assert m.state is S.DISABLED


def test_zero_disable_failures_means_never() -> None:
    m = OutputMachine(dataclasses.replace(B, disable_failures=0), 0.0)
    m.handle(Start(0.0))
    for i in range(50):
        m.handle(Failed(float(i), "refused"))
        m.handle(RetryDue(float(i)))
    assert m.state is S.CONNECTING and m.failures == 50


def test_every_state_change_reports_once_and_time_in_state_moves() -> None:
    m = OutputMachine(B, 10.0)
    changes = []
    for event in (Start(11.0), Published(12.0), Failed(20.0, "reset"), RetryDue(21.0), Stop(22.0)):
        changes += [e for e in m.handle(event) if isinstance(e, StateChanged)]  # type: ignore[arg-type]
    assert [(c.old.value, c.new.value) for c in changes] == [
        ("idle", "connecting"),
        ("connecting", "live"),
        ("live", "backoff"),
        ("backoff", "connecting"),
        ("connecting", "stopped"),
    ]
    assert m.since == 22.0 and m.reason == "stopped"


def test_effect_types_are_what_the_shell_carries_out() -> None:
    m = OutputMachine(B, 0.0)
    assert any(isinstance(e, Connect) for e in m.handle(Start(0.0)))
    assert any(isinstance(e, Attach) for e in m.handle(Published(1.0)))


def test_backoff_delay_is_capped_and_jitter_only_shortens() -> None:
    delays = [backoff_delay(n, first=1.0, cap=30.0) for n in range(1, 10)]
    assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert max(delays) == 30.0
    assert 0.75 * 8 <= backoff_delay(4, jitter=0.99) <= 8
    assert backoff_delay(10_000, first=1.0, cap=60.0) == 60.0  # no overflow on a long outage
