"""Destination classes as policy objects, the program checks against them, liveness, and the reconnect gate."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from services.output import policy
from services.output.event_fanout import ProgramMeter
from services.output.liveness import SEQUENCE_MOD, Liveness
from services.output.policy import CLASSES, ProgramFacts
from services.output.prepared import Prepared
from services.output.reconnect_gate import ReconnectGate
from shared.rtmp import chunk

# --- the classes ---


def test_every_class_documents_every_limit_within_the_issue_bounds() -> None:
    assert set(CLASSES) == {"A", "B", "C"}
    for cls in CLASSES.values():
        assert cls.stall_limit_s <= 10.0
        assert cls.retry_first_s * 1.0 <= 3.0  # the first retry comes within 3 s, whatever the jitter
        assert 30.0 <= max(cls.retry_cap_s, 15.0) <= 60.0 or cls.dest_class == "A"
        assert cls.rejected_first_s > cls.retry_first_s * 3  # a refused publish retries more slowly
        assert cls.disable_failures > 0 and cls.disable_window_s > 0
    assert [c.priority for c in sorted(CLASSES.values(), key=lambda c: c.priority)] == [1, 2, 3]
    assert CLASSES["B"].keyframe_interval_max_s == 2.0
    # C: higher recovery tolerance (longer stall limit), strict backoff (slower, fewer attempts)
    assert CLASSES["C"].stall_limit_s > CLASSES["B"].stall_limit_s
    assert CLASSES["C"].retry_cap_s > CLASSES["B"].retry_cap_s
    assert CLASSES["C"].disable_failures < CLASSES["B"].disable_failures


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("stall_limit_s", 12.0, "stall_limit_s"),
        ("retry_first_s", 5.0, "retry_first_s"),
        ("retry_cap_s", 0.5, "retry cap"),
        ("jitter", 1.0, "jitter"),
        ("queue_s", 0.0, "positive"),
    ],
)
def test_a_policy_outside_the_bounds_is_refused(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(CLASSES["B"], **{field: value})


VIOLATIONS = [
    # (class, bitrate, keyframe interval, expected warnings containing)
    ("B", 4_000_000, 2.0, []),
    ("B", 4_000_000, 2.08, []),  # one frame of slack
    ("B", 4_000_000, 4.0, ["keyframe interval 4.0 s exceeds the class B limit of 2 s"]),
    ("C", 3_000_000, 4.0, []),
    ("B", 8_000_000, 2.0, ["bitrate 8.0 Mbit/s exceeds the class B cap of 6 Mbit/s"]),
    ("B", 6_200_000, 2.0, []),  # within 5% of the cap
    ("C", 9_000_000, 6.0, ["keyframe interval 6.0 s", "bitrate 9.0 Mbit/s"]),
    ("A", 0, 0.0, []),  # nothing measured yet: nothing to say
]


@pytest.mark.parametrize(("cls", "bitrate", "gop", "expected"), VIOLATIONS)
def test_program_violations_per_class(cls: str, bitrate: int, gop: float, expected: list[str]) -> None:
    found = policy.violations(CLASSES[cls], ProgramFacts(bitrate_bps=bitrate, keyframe_interval_s=gop))
    assert len(found) == len(expected)
    for text, want in zip(found, expected, strict=True):
        assert want in text


def test_queue_limits_and_ack_window_scale_with_the_program_and_stay_bounded() -> None:
    b = CLASSES["B"]
    assert policy.queue_limits(b, 250_000) == (1_000_000, 250_000)  # 4 s of 2 Mbit/s
    assert policy.queue_limits(b, 1_000) == (policy.QUEUE_MIN_BYTES, policy.QUEUE_MIN_BYTES // 4)
    assert policy.queue_limits(b, 10**9)[0] == policy.QUEUE_MAX_BYTES
    assert policy.queue_limits(b, 0)[0] == 4 * policy.FALLBACK_BYTES_PER_S  # unknown bitrate
    assert policy.ack_window(b, 750_000) == 562_500  # 6 Mbit/s, 6 s stall limit: an eighth
    assert policy.ack_window(b, 1_000) == policy.ACK_WINDOW_MIN
    assert policy.ack_window(b, 0) == policy.ACK_WINDOW_MIN  # unknown yet: small, adjusted later
    assert policy.ack_window(b, 10**9) == policy.ACK_WINDOW_MAX


def test_overrides_from_the_environment() -> None:
    classes, cap = policy.load({"FANOUT_OUTPUT_POLICY": "stall_limit_s=3, C.disable_failures=3"})
    assert all(c.stall_limit_s == 3.0 for c in classes.values())
    assert classes["C"].disable_failures == 3 and classes["B"].disable_failures == 10
    assert cap == policy.RECONNECT_CAP_DEFAULT
    assert policy.load({"FANOUT_OUTPUT_RECONNECT_CAP": "4"})[1] == 4
    assert CLASSES["B"].stall_limit_s == 6.0  # the defaults are untouched
    assert policy.for_class(classes, "Z") is classes["B"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("stall_limit_s", "not field=value"),
        ("D.stall_limit_s=3", "unknown class"),
        ("speed=3", "unknown policy field"),
        ("title=x", "unknown policy field"),
        ("disable_failures=many", "needs a number"),
        ("stall_limit_s=30", "stall_limit_s must be"),
    ],
)
def test_bad_overrides_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        policy.load({"FANOUT_OUTPUT_POLICY": spec})


def test_a_bad_reconnect_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        policy.load({"FANOUT_OUTPUT_RECONNECT_CAP": "0"})


# --- the program meter ---


def _item(ts: int, size: int, keyframe: bool = False, type_id: int = chunk.VIDEO) -> Prepared:
    return Prepared.make(type_id, ts, b"\x00" * size, keyframe)


def test_program_meter_measures_bitrate_and_the_longest_recent_gop() -> None:
    meter = ProgramMeter()
    assert meter.facts() == ProgramFacts()
    for frame in range(30 * 12 + 1):  # 12 s at 30 fps, 12_500 bytes a frame = 3 Mbit/s; GOPs 2,4,2,2,2 s
        ts = frame * 1000 // 30
        key = frame in (0, 60, 180, 240, 300, 360)
        meter.add(_item(ts, 12_500, key))
    facts = meter.facts()
    assert 2_900_000 <= facts.bitrate_bps <= 3_100_000
    assert facts.keyframe_interval_s == 2.0  # the 4 s GOP is older than the last three
    meter.add(_item(12_000 + 6_000, 12_500, True))  # a 6 s GOP now
    assert meter.facts().keyframe_interval_s == 6.0


# --- liveness ---


LIVENESS = [
    # (description, steps of (now, written, queued, in_kernel, ack or None), expected verdict at the end)
    ("healthy: writes drain, acks flow", [(t, 100_000 * t, 0, 0, 100_000 * t) for t in range(1, 12)], None),
    (
        "delivery stall: bytes queued, none reach the socket",
        [(1, 100_000, 50_000, 0, None), (2, 200_000, 150_000, 0, None), (4, 300_000, 250_000, 0, None),
         (7.5, 400_000, 350_000, 0, None)],
        "nothing delivered for 6 s",
    ),
    (
        "half-open: the kernel takes bytes, the peer's TCP acknowledges none",
        [(t, 100_000 * t, 0, 100_000 * t - 5_000, None) for t in range(1, 9)],
        "nothing delivered for 6 s",
    ),
    (
        "slow but moving: queued bytes keep draining",
        [(t, 200_000 * t, 100_000 * t - 1, 0, None) for t in range(1, 15)],
        None,
    ),
    (
        # the socket takes nothing for seconds at a time (its buffer frees in bursts) while the peer's
        # TCP keeps acknowledging what sits in the kernel: delivering, so not a stall
        "throttled: the socket takes bytes in bursts, the kernel queue drains steadily",
        [(t, 1_000_000 + 500_000 * (t // 8), 500_000 * (t // 8), 600_000 - 50_000 * (t % 8), None)
         for t in range(1, 30)],
        None,
    ),
    (
        "ack stall: the peer's TCP takes bytes, RTMP acknowledges nothing",
        [(0.5, 10_000, 0, 0, 10_000)] + [(t, 10_000 + 100_000 * t, 0, 0, None) for t in range(1, 11)],
        "acknowledged nothing for 6 s",
    ),
    (
        "never acknowledges anything: not judged by acks",
        [(t, 100_000 * t, 0, 0, None) for t in range(1, 15)],
        None,
    ),
    (
        "acks late but steady (throttled): fine",
        [(t, 100_000 * t, 0, 0, 100_000 * (t - 3) if t > 3 else 1) for t in range(1, 15)],
        None,
    ),
    (
        "bytes waiting in the kernel are not counted against RTMP acknowledgements",
        [(0.5, 10_000, 0, 0, 10_000)]
        + [(t, 10_000 + 100_000 * t, 0, 100_000 * t - 1_000 * t, None) for t in range(1, 5)]
        + [(t, 410_000, 0, 400_000 - 1_000 * t, None) for t in range(5, 14)],
        None,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("what", "steps", "verdict"), LIVENESS, ids=[c[0] for c in LIVENESS])
def test_liveness(
    what: str, steps: list[tuple[float, int, int, int, int | None]], verdict: str | None
) -> None:
    live = Liveness(stall_limit_s=6.0, window=50_000, now=0.0)
    result = None
    for now, written, queued, in_kernel, ack in steps:
        if ack is not None:
            live.on_ack(ack % SEQUENCE_MOD, written)
        result = live.check(now, written, queued, in_kernel)
        if result is not None:
            break
    if verdict is None:
        assert result is None, result
    else:
        assert result is not None and verdict in result


def test_acknowledgements_unwrap_past_4_gib() -> None:
    live = Liveness(stall_limit_s=6.0, window=50_000, now=0.0)
    written = 5 * 2**32 + 1_000_000
    live.on_ack((written - 20_000) % SEQUENCE_MOD, written)
    assert live.acked == written - 20_000


# --- the reconnect gate ---


def test_the_gate_never_runs_more_than_its_cap_and_serves_priority_first() -> None:
    async def scenario() -> tuple[int, list[str], int]:
        gate = ReconnectGate(2)
        order: list[str] = []
        release = asyncio.Event()

        async def attempt(name: str, priority: int) -> None:
            async with gate.slot(priority):
                order.append(name)
                await release.wait()

        holders = [asyncio.create_task(attempt(f"h{i}", 3)) for i in range(2)]
        await asyncio.sleep(0)
        waiters = [asyncio.create_task(attempt("c", 3)), asyncio.create_task(attempt("b", 2))]
        waiters.append(asyncio.create_task(attempt("a", 1)))
        cancelled = asyncio.create_task(attempt("gone", 1))
        await asyncio.sleep(0)
        waiting = gate.waiting
        cancelled.cancel()
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*holders, *waiters)
        assert gate.active == 0
        return gate.max_active, order, waiting

    max_active, order, waiting = asyncio.run(scenario())
    assert max_active == 2 and waiting == 4
    assert order[:2] == ["h0", "h1"] and order[2:] == ["a", "b", "c"]
