"""SRT transport figures and the degraded-link verdict, from srt_bistats-shaped samples."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from shared.srt.stats import Interval, LinkJudge, TransportCounters


def perf(**fields: Any) -> Any:
    base = dict.fromkeys(
        (
            "pktRecv", "pktSent", "pktRcvLoss", "pktSndLoss", "pktRcvRetrans", "pktRetrans", "pktRcvDrop",
            "pktSndDrop", "pktRcvLossTotal", "pktSndLossTotal", "pktRetransTotal", "pktRcvDropTotal",
            "pktSndDropTotal", "msRcvBuf", "msSndBuf", "pktFlightSize", "msRcvTsbPdDelay", "msSndTsbPdDelay",
        ),
        0,
    )  # fmt: skip
    base.update(mbpsSendRate=0.0, mbpsRecvRate=0.0, msRTT=0.0)
    base.update(fields)
    return SimpleNamespace(**base)


def test_receiver_totals_sum_the_retransmissions_received_each_second() -> None:
    counters = TransportCounters("receiver")
    counters.update(perf(pktRecv=500, pktRcvRetrans=10, pktRcvLossTotal=10))
    transport, interval = counters.update(
        perf(
            pktRecv=520, pktRcvRetrans=12, pktRcvLoss=12, pktRcvLossTotal=22, pktRcvDropTotal=1, pktRcvDrop=1,
            mbpsRecvRate=6.25, mbpsSendRate=0.01, msRTT=0.42, msRcvBuf=118, pktFlightSize=3, msRcvTsbPdDelay=120,
        )
    )  # fmt: skip
    assert transport.pkt_retrans == 22 and transport.pkt_loss == 22 and transport.pkt_drop == 1
    assert transport.recv_rate_bps == 6_250_000 and transport.send_rate_bps == 10_000
    assert (transport.rtt_ms, transport.rcv_buffer_ms, transport.flight_size, transport.latency_ms) == (
        0.42,
        118,
        3,
        120,
    )
    assert interval == Interval(packets=520, lost=12, dropped=1, rtt_ms=0.42)


def test_sender_reads_the_sender_side() -> None:
    transport, interval = TransportCounters("sender").update(
        perf(pktSent=300, pktSndLoss=6, pktRetransTotal=40, pktSndDropTotal=2, msSndTsbPdDelay=200)
    )
    assert (transport.pkt_retrans, transport.pkt_drop, transport.latency_ms) == (40, 2, 200)
    assert (interval.packets, interval.lost) == (300, 6)


def clean(rtt: float = 1.0) -> Interval:
    return Interval(packets=500, lost=0, dropped=0, rtt_ms=rtt)


@pytest.mark.parametrize(
    ("samples", "reasons"),
    [
        ([clean()] * 5, []),
        ([Interval(500, 10, 0, 1.0)] * 5, ["packet loss 2.0% >= 1%"]),
        ([Interval(500, 4, 0, 1.0)] * 5, []),  # 0.8 %: under the line
        ([Interval(500, 10, 0, 1.0)] * 2, []),  # not sustained yet: two seconds
        ([Interval(5, 5, 0, 1.0)] * 4, []),  # 40 packets: too few to call it a percentage
        ([clean()] * 4 + [Interval(500, 200, 0, 1.0)], ["packet loss 7.4% >= 1%"]),  # one bad second counts
        ([clean(200.0)] * 3, ["median RTT 200 ms > 150 ms"]),
        ([clean(200.0), clean(1.0), clean(1.0)], []),  # a median, not one spike
        ([clean()] * 4 + [Interval(500, 0, 3, 1.0)], ["3 packets dropped too late in the last 5 s"]),
    ],
)
def test_verdict(samples: list[Interval], reasons: list[str]) -> None:
    judge = LinkJudge()
    for s in samples:
        verdict = judge.add(s)
    assert list(verdict.reasons) == reasons
    assert verdict.degraded == bool(reasons)


def test_the_window_forgets_old_trouble() -> None:
    judge = LinkJudge(window=5)
    for _ in range(5):
        judge.add(Interval(500, 50, 2, 300.0))
    assert judge.verdict().degraded
    for _ in range(5):
        verdict = judge.add(clean())
    assert not verdict.degraded and verdict.loss_pct == 0.0
