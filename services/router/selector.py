"""Which input should be live: a pure decision over the inputs' last-seen times.

The skeleton policy: the primary while it is delivering, else the backup while it is delivering, else
stay where we are (the program pauses rather than flapping). Full failover policy (stabilisation
window, lock, content triggers) builds on this.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_LOSS_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Candidate:
    input_id: str
    role: str
    last_packet: float | None  # monotonic seconds, None when never seen


def choose(candidates: list[Candidate], current: str | None, now: float, loss_timeout_s: float) -> str | None:
    def delivering(c: Candidate) -> bool:
        return c.last_packet is not None and now - c.last_packet <= loss_timeout_s

    order = sorted(candidates, key=lambda c: 0 if c.role == "primary" else 1)
    for candidate in order:
        if delivering(candidate):
            return candidate.input_id
    return current
