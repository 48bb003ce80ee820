"""The status cache: latest report per id, an age limit on input health, a bound on memory."""

from __future__ import annotations

from services.orchestrator.status import StatusCache
from shared import messages


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def health(input_id: str, event_id: str = "ev_1", bitrate: int = 1) -> messages.InputHealth:
    return messages.InputHealth("tn", event_id, input_id, connected=True, bitrate_bps=bitrate)


def test_latest_input_health_until_it_is_too_old() -> None:
    clock = Clock()
    cache = StatusCache(input_max_age_s=5.0, clock=clock)
    assert cache.input("ev_1", "in_1") is None
    cache.update_input(health("in_1", bitrate=1))
    cache.update_input(health("in_1", bitrate=2))
    assert cache.input("ev_1", "in_1").bitrate_bps == 2  # type: ignore[union-attr]
    assert cache.input("ev_other", "in_1") is None
    clock.now += 5.1
    assert cache.input("ev_1", "in_1") is None


def test_output_status_has_no_age_limit_and_is_forgotten_on_delete() -> None:
    clock = Clock()
    cache = StatusCache(clock=clock)
    cache.update_output(messages.OutputStatus("tn", "ev_1", "out_1", state="live"))
    clock.now += 3600
    assert cache.output("ev_1", "out_1").state == "live"  # type: ignore[union-attr]
    assert cache.output("ev_2", "out_1") is None
    cache.forget("out_1")
    assert cache.output("ev_1", "out_1") is None


def test_the_least_recently_reported_go_first_when_full() -> None:
    cache = StatusCache(max_entries=3)
    for i in range(3):
        cache.update_input(health(f"in_{i}"))
    cache.update_input(health("in_0"))  # reported again: now the most recent
    cache.update_input(health("in_3"))
    assert [cache.input("ev_1", f"in_{i}") is not None for i in range(4)] == [True, False, True, True]
