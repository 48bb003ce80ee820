"""Destination classes A, B and C: the limits an output of each class is held to, as policy objects.

A is owned playback (our own player: strict monitoring, recovers first), B is primary social
(YouTube, Twitch, Facebook: compatibility first, 2 s keyframes, platform-safe bitrate), C is partner
outputs (conservative: a longer stall tolerance, strict backoff, few attempts). docs/destination-classes.md
explains every figure. A policy is pure data; ``violations`` compares the program against it and
``queue_limits``/``ack_window`` turn it into byte counts at the program's bitrate.

Tests and operators can override any field with ``FANOUT_OUTPUT_POLICY``: comma-separated
``[class.]field=value`` entries, e.g. ``stall_limit_s=3,C.disable_failures=3`` (no class: all classes).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

POLICY_ENV = "FANOUT_OUTPUT_POLICY"
RECONNECT_CAP_ENV = "FANOUT_OUTPUT_RECONNECT_CAP"
RECONNECT_CAP_DEFAULT = 8
MAX_STALL_LIMIT_S = 10.0
MAX_FIRST_RETRY_S = 3.0

# When the program's bitrate is not known yet (no media so far), size queues and windows for this.
FALLBACK_BYTES_PER_S = 1_000_000
QUEUE_MIN_BYTES = 512 * 1024
QUEUE_MAX_BYTES = 32 * 1024 * 1024
ACK_WINDOW_MIN = 32 * 1024
ACK_WINDOW_MAX = 2_500_000


@dataclass(frozen=True)
class DestinationPolicy:
    dest_class: str
    title: str
    priority: int  # 1 first: waiting reconnects of a higher priority get a slot first
    bitrate_cap_bps: int  # a program above it (5 s average, 5% slack) shows a warning
    keyframe_interval_max_s: float  # a program GOP longer than this shows a warning
    retry_first_s: float  # the pause after a first network failure (at most 3 s)
    retry_cap_s: float  # pauses double up to this
    rejected_first_s: float  # the pause after the destination refused the publish (slower)
    rejected_cap_s: float
    jitter: float  # up to this fraction of each pause is taken off at random, so retries spread
    stall_limit_s: float  # nothing delivered, or nothing acknowledged, this long: reconnect (<= 10 s)
    stable_after_s: float  # live at least this long before a failure: the backoff starts over
    disable_failures: int  # this many failures ... (0: never auto-disable)
    disable_window_s: float  # ... within this window: the output is disabled until re-enabled
    queue_s: float  # media queued beyond this (at the program's bitrate): drop to the next keyframe

    def __post_init__(self) -> None:
        if not 0 < self.stall_limit_s <= MAX_STALL_LIMIT_S:
            raise ValueError(f"class {self.dest_class}: stall_limit_s must be in (0, {MAX_STALL_LIMIT_S:g}]")
        if not 0 < self.retry_first_s <= MAX_FIRST_RETRY_S:
            raise ValueError(f"class {self.dest_class}: retry_first_s must be in (0, {MAX_FIRST_RETRY_S:g}]")
        if self.retry_cap_s < self.retry_first_s or self.rejected_cap_s < self.rejected_first_s:
            raise ValueError(f"class {self.dest_class}: a retry cap is below its first pause")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"class {self.dest_class}: jitter must be in [0, 1)")
        if self.disable_failures < 0 or self.disable_window_s <= 0 or self.queue_s <= 0:
            raise ValueError(f"class {self.dest_class}: disable and queue limits must be positive")


CLASSES: dict[str, DestinationPolicy] = {
    "A": DestinationPolicy(
        dest_class="A",
        title="owned playback",
        priority=1,
        bitrate_cap_bps=12_000_000,
        keyframe_interval_max_s=2.0,
        retry_first_s=0.5,
        retry_cap_s=15.0,
        rejected_first_s=5.0,
        rejected_cap_s=60.0,
        jitter=0.25,
        stall_limit_s=4.0,
        stable_after_s=30.0,
        disable_failures=30,
        disable_window_s=600.0,
        queue_s=3.0,
    ),
    "B": DestinationPolicy(
        dest_class="B",
        title="primary social",
        priority=2,
        bitrate_cap_bps=6_000_000,
        keyframe_interval_max_s=2.0,
        retry_first_s=1.0,
        retry_cap_s=30.0,
        rejected_first_s=10.0,
        rejected_cap_s=120.0,
        jitter=0.25,
        stall_limit_s=6.0,
        stable_after_s=30.0,
        disable_failures=10,
        disable_window_s=300.0,
        queue_s=4.0,
    ),
    "C": DestinationPolicy(
        dest_class="C",
        title="partner",
        priority=3,
        bitrate_cap_bps=4_000_000,
        keyframe_interval_max_s=4.0,
        retry_first_s=2.0,
        retry_cap_s=60.0,
        rejected_first_s=30.0,
        rejected_cap_s=300.0,
        jitter=0.25,
        stall_limit_s=8.0,
        stable_after_s=60.0,
        disable_failures=6,
        disable_window_s=600.0,
        queue_s=8.0,
    ),
}


@dataclass(frozen=True)
class ProgramFacts:
    """What the output service measured of an event's program (zeros until it has seen enough)."""

    bitrate_bps: int = 0  # audio + video + data, over the last few seconds of media time
    keyframe_interval_s: float = 0.0  # the longest of the last few complete GOPs


def violations(policy: DestinationPolicy, program: ProgramFacts) -> list[str]:
    """Why the program breaks this output's class, in words an operator can act on."""
    found = []
    limit = policy.keyframe_interval_max_s
    if program.keyframe_interval_s > limit * 1.05 + 0.05:
        found.append(
            f"keyframe interval {program.keyframe_interval_s:.1f} s exceeds the class {policy.dest_class} "
            f"limit of {limit:g} s"
        )
    if program.bitrate_bps > policy.bitrate_cap_bps * 1.05:
        found.append(
            f"bitrate {program.bitrate_bps / 1e6:.1f} Mbit/s exceeds the class {policy.dest_class} "
            f"cap of {policy.bitrate_cap_bps / 1e6:g} Mbit/s"
        )
    return found


def _rate(program_bytes_per_s: int) -> int:
    return program_bytes_per_s if program_bytes_per_s > 0 else FALLBACK_BYTES_PER_S


def queue_limits(policy: DestinationPolicy, program_bytes_per_s: int) -> tuple[int, int]:
    """(high, low) water marks in bytes: past high, drop to a keyframe; resume once under low."""
    high = int(_rate(program_bytes_per_s) * policy.queue_s)
    high = max(QUEUE_MIN_BYTES, min(QUEUE_MAX_BYTES, high))
    return high, high // 4


def ack_window(policy: DestinationPolicy, program_bytes_per_s: int) -> int:
    """The RTMP acknowledgement window to ask a destination for.

    An eighth of a stall limit's worth of media: a healthy destination acknowledges several times per
    stall limit (even throttled to a quarter of the bitrate), and a silent one is noticed soon after.
    Before the bitrate is known, the smallest window (acknowledgements are 16 bytes; more is cheap).
    """
    if program_bytes_per_s <= 0:
        return ACK_WINDOW_MIN
    window = int(program_bytes_per_s * policy.stall_limit_s / 8)
    return max(ACK_WINDOW_MIN, min(ACK_WINDOW_MAX, window))


def with_overrides(classes: Mapping[str, DestinationPolicy], spec: str) -> dict[str, DestinationPolicy]:
    """``classes`` with ``[class.]field=value`` overrides applied; ValueError names a bad entry."""
    out = dict(classes)
    fields = {f.name: f.type for f in dataclasses.fields(DestinationPolicy)}
    for entry in (e.strip() for e in spec.split(",")):
        if not entry:
            continue
        target, eq, raw = entry.partition("=")
        if not eq:
            raise ValueError(f"{POLICY_ENV}: {entry!r} is not field=value")
        cls, dot, name = target.strip().rpartition(".")
        names = [cls] if dot else list(out)
        if dot and cls not in out:
            raise ValueError(f"{POLICY_ENV}: unknown class {cls!r} (A, B or C)")
        if name not in fields or name in ("dest_class", "title"):
            raise ValueError(f"{POLICY_ENV}: unknown policy field {name!r}")
        try:
            value: float | int = int(raw) if fields[name] == "int" else float(raw)
        except ValueError:
            raise ValueError(f"{POLICY_ENV}: {name} needs a number, got {raw.strip()!r}") from None
        for n in names:
            out[n] = dataclasses.replace(out[n], **{name: value})  # type: ignore[arg-type]  # name checked above
    return out


def load(env: Mapping[str, str] = os.environ) -> tuple[dict[str, DestinationPolicy], int]:
    """The classes with the environment's overrides, and the per-process reconnect cap."""
    classes = with_overrides(CLASSES, env.get(POLICY_ENV, ""))
    raw = env.get(RECONNECT_CAP_ENV, "")
    try:
        cap = int(raw) if raw else RECONNECT_CAP_DEFAULT
    except ValueError:
        raise ValueError(f"{RECONNECT_CAP_ENV} must be an integer, got {raw!r}") from None
    if cap < 1:
        raise ValueError(f"{RECONNECT_CAP_ENV} must be at least 1")
    return classes, cap


def for_class(classes: Mapping[str, DestinationPolicy], dest_class: str) -> DestinationPolicy:
    return classes.get(dest_class, classes["B"])
