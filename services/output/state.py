"""Destination states. Transitions go through one place that logs ``old -> new`` with the reason."""

from __future__ import annotations

import enum


class OutputState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    LIVE = "live"
    BACKOFF = "backoff"
    REJECTED = "rejected"
    DISABLED = "disabled"
    STOPPED = "stopped"


ALLOWED: dict[OutputState, frozenset[OutputState]] = {
    OutputState.IDLE: frozenset({OutputState.CONNECTING, OutputState.STOPPED}),
    OutputState.CONNECTING: frozenset(
        {OutputState.LIVE, OutputState.BACKOFF, OutputState.REJECTED, OutputState.STOPPED}
    ),
    OutputState.LIVE: frozenset({OutputState.BACKOFF, OutputState.STOPPED}),
    OutputState.BACKOFF: frozenset({OutputState.CONNECTING, OutputState.STOPPED, OutputState.DISABLED}),
    OutputState.REJECTED: frozenset({OutputState.CONNECTING, OutputState.STOPPED, OutputState.DISABLED}),
    OutputState.DISABLED: frozenset({OutputState.STOPPED}),
    OutputState.STOPPED: frozenset(),
}


def check_transition(old: OutputState, new: OutputState) -> None:
    if new not in ALLOWED[old]:
        raise ValueError(f"output cannot go from {old.value} to {new.value}")


def backoff_delay(failures: int, first: float = 1.0, cap: float = 30.0, jitter: float = 0.0) -> float:
    """Exponential backoff: first, 2*first, 4*first... capped; ``jitter`` in [0, 1) spreads retries."""
    base = min(cap, first * (2 ** max(0, failures - 1)))
    return base * (1.0 - 0.25 * jitter)
