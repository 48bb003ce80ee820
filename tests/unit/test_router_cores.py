"""Router's pure input choice."""

from __future__ import annotations

import pytest

from services.router.selector import Candidate, choose

P, B = "in_p", "in_b"


@pytest.mark.parametrize(
    ("primary_seen", "backup_seen", "current", "expected"),
    [
        (None, None, None, None),  # nothing has ever arrived
        (9.5, None, None, P),
        (None, 9.5, None, B),
        (9.5, 9.5, B, P),  # both delivering: the primary is preferred
        (5.0, 9.5, P, B),  # primary silent longer than the loss timeout
        (5.0, 5.0, P, P),  # both silent: stay (the program pauses rather than flapping)
        (8.0, 9.9, P, P),  # exactly at the timeout the primary still counts
    ],
)
def test_choose(
    primary_seen: float | None, backup_seen: float | None, current: str | None, expected: str | None
) -> None:
    candidates = [Candidate(P, "primary", primary_seen), Candidate(B, "backup", backup_seen)]
    assert choose(candidates, current, now=10.0, loss_timeout_s=2.0) == expected
