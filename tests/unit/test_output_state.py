"""Output states and backoff."""

from __future__ import annotations

import pytest

from services.output.state import OutputState, backoff_delay, check_transition

S = OutputState


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        (S.IDLE, S.CONNECTING, True),
        (S.CONNECTING, S.LIVE, True),
        (S.CONNECTING, S.REJECTED, True),
        (S.LIVE, S.BACKOFF, True),
        (S.BACKOFF, S.CONNECTING, True),
        (S.LIVE, S.STOPPED, True),
        (S.IDLE, S.LIVE, False),
        (S.STOPPED, S.CONNECTING, False),
        (S.LIVE, S.REJECTED, False),
    ],
)
def test_transitions(old: OutputState, new: OutputState, ok: bool) -> None:
    if ok:
        check_transition(old, new)
    else:
        with pytest.raises(ValueError, match=f"from {old.value} to {new.value}"):
            check_transition(old, new)


def test_backoff_grows_to_its_cap_and_jitter_only_shortens() -> None:
    delays = [backoff_delay(n, first=1.0, cap=30.0) for n in range(1, 10)]
    assert delays[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert max(delays) == 30.0
    assert 0.75 * 8 <= backoff_delay(4, jitter=0.99) <= 8
