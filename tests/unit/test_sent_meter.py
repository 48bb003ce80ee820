"""What a destination reports it sent: bitrate from its byte counter, keyframe interval from its keyframes."""

from __future__ import annotations

import pytest

from services.output.meter import SentMeter


def test_bitrate_from_byte_counter_samples_and_keyframe_interval() -> None:
    meter = SentMeter()
    assert meter.facts().bitrate_bps == 0 and meter.facts().keyframe_interval_s == 0
    for second in range(6):
        meter.sample(100.0 + second, second * 375_000)  # 3 Mbit/s
        meter.sample(100.0 + second + 0.1, second * 375_000 + 999)  # a second ask in a moment is ignored
    for ts in (0, 2000, 4000, 6000):
        meter.keyframe(ts)
    facts = meter.facts()
    assert facts.bitrate_bps == pytest.approx(3_000_000, rel=0.01)
    assert facts.keyframe_interval_s == 2.0


def test_longest_recent_gop_is_reported_and_a_counter_reset_reads_zero() -> None:
    meter = SentMeter()
    for ts in (0, 2000, 6000, 8000):
        meter.keyframe(ts)
    assert meter.facts().keyframe_interval_s == 4.0
    meter.sample(1.0, 10_000)
    meter.sample(2.0, 5_000)  # a new connection restarted the byte counter
    assert meter.facts().bitrate_bps == 0
