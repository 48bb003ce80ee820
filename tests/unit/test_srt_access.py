"""Who may publish over SRT: stream id -> route or refusal code, and the refusal-log throttle."""

from __future__ import annotations

import pytest

from services.ingest.keys import KeyDirectory, Route, key_hash
from services.ingest.srt_access import Throttle, admit
from shared.messages import EventSpec, InputSpec
from shared.srt import lib as L

KEY = "live-key-0123456789"


def directory(state: str = "live", protocol: str = "srt") -> KeyDirectory:
    keys = KeyDirectory()
    spec = EventSpec(
        tenant_id="tn",
        id="ev",
        name="show",
        state=state,  # type: ignore[arg-type]
        inputs=(InputSpec("in1", "primary", protocol, key_hash(KEY), passphrase="p" * 12, latency_ms=300),),
    )
    keys.update("ev", spec)
    return keys


@pytest.mark.parametrize(
    ("streamid", "code"),
    [
        (f"#!::r={KEY},m=publish", 0),
        (KEY, 0),  # the plain form
        (f"  {KEY}  ", 0),
        (f"#!::r={KEY}", L.SRT_REJX_BAD_MODE),  # no m: the standard's default is request
        (f"#!::r={KEY},m=request", L.SRT_REJX_BAD_MODE),
        (f"#!::r={KEY},m=bidirectional", L.SRT_REJX_BAD_MODE),
        (f"#!::r={KEY},m=publish,t=file", 1415),
        ("#!::r=another-key,m=publish", L.SRT_REJX_NOTFOUND),
        ("", L.SRT_REJX_BAD_REQUEST),
        ("#!::m=publish", L.SRT_REJX_BAD_REQUEST),
    ],
)
def test_admission(streamid: str, code: int) -> None:
    admission = admit(streamid, directory().lookup)
    assert admission.reject_code == code
    assert admission.accepted == (code == 0)
    assert KEY not in admission.reason
    if admission.route is not None:
        assert admission.route == Route("tn", "ev", "in1", "primary", "srt", "p" * 12, 300)


def test_stopped_events_and_rtmp_keys_are_not_srt_routes() -> None:
    for keys in (directory(state="stopped"), directory(protocol="rtmp")):
        assert admit(f"#!::r={KEY},m=publish", keys.lookup).reject_code == L.SRT_REJX_NOTFOUND


def test_throttle_reports_once_per_interval_with_the_count_held_back() -> None:
    throttle = Throttle(interval_s=10)
    assert throttle.allow("a", 0.0) == 0
    assert [throttle.allow("a", t) for t in (1.0, 2.0, 9.9)] == [None, None, None]
    assert throttle.allow("b", 3.0) == 0  # another caller is its own
    assert throttle.allow("a", 10.5) == 3
    assert throttle.allow("a", 11.0) is None


def test_throttle_memory_is_bounded() -> None:
    throttle = Throttle(interval_s=10, max_keys=3)
    for i in range(10):
        assert throttle.allow(i, 0.0) == 0
    assert len(throttle._last) <= 3
