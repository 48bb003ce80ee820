"""SRT transport statistics, per connection per second, and the contribution-quality verdict. Pure.

``TransportCounters.update`` takes one ``srt_bistats`` sample (anything with ``CBytePerfMon``'s field
names, taken with ``clear=1`` so the interval fields cover the last second) and keeps running totals;
``LinkJudge`` keeps a short window of samples and says whether the link is degraded, by the field's
contribution thresholds: sustained packet loss of 1 % or more, a median RTT above 150 ms, or packets
dropped too late to play.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass
from typing import Final, Literal, Protocol

LOSS_LIMIT_PCT: Final = 1.0
RTT_LIMIT_MS: Final = 150.0
WINDOW: Final = 5  # samples (seconds) a verdict looks at
MIN_SAMPLES: Final = 3  # "sustained": a verdict on loss needs at least this many seconds
MIN_PACKETS: Final = 50  # and this many packets, so a handful at startup is not a percentage

Role = Literal["receiver", "sender"]


class PerfSample(Protocol):
    pktRecv: int
    pktSent: int
    pktRcvLoss: int
    pktSndLoss: int
    pktRcvRetrans: int
    pktRetrans: int
    pktRcvDrop: int
    pktSndDrop: int
    pktRcvLossTotal: int
    pktSndLossTotal: int
    pktRetransTotal: int
    pktRcvDropTotal: int
    pktSndDropTotal: int
    mbpsSendRate: float
    mbpsRecvRate: float
    msRTT: float
    msRcvBuf: int
    msSndBuf: int
    pktFlightSize: int
    msRcvTsbPdDelay: int
    msSndTsbPdDelay: int


@dataclass(frozen=True)
class Interval:
    """One second of a connection, from the side that matters for its role."""

    packets: int  # received (receiver) or sent (sender), retransmissions included
    lost: int
    dropped: int
    rtt_ms: float


@dataclass(frozen=True)
class Transport:
    rtt_ms: float = 0.0
    send_rate_bps: int = 0
    recv_rate_bps: int = 0
    pkt_loss: int = 0  # lost packets detected, since the connection started
    pkt_retrans: int = 0  # retransmitted packets (received, for a receiver; sent, for a sender)
    pkt_drop: int = 0  # packets dropped too late to play (receiver) or to send (sender)
    rcv_buffer_ms: int = 0
    snd_buffer_ms: int = 0
    flight_size: int = 0
    latency_ms: int = 0  # the negotiated TSBPD latency


class TransportCounters:
    def __init__(self, role: Role) -> None:
        self.role = role
        self.retrans_received = 0  # libsrt keeps no total of retransmissions received: sum intervals
        self.last = Transport()

    def update(self, perf: PerfSample) -> tuple[Transport, Interval]:
        receiver = self.role == "receiver"
        if receiver:
            self.retrans_received += max(0, int(perf.pktRcvRetrans))
        self.last = Transport(
            rtt_ms=round(float(perf.msRTT), 3),
            send_rate_bps=int(float(perf.mbpsSendRate) * 1_000_000),
            recv_rate_bps=int(float(perf.mbpsRecvRate) * 1_000_000),
            pkt_loss=int(perf.pktRcvLossTotal if receiver else perf.pktSndLossTotal),
            pkt_retrans=self.retrans_received if receiver else int(perf.pktRetransTotal),
            pkt_drop=int(perf.pktRcvDropTotal if receiver else perf.pktSndDropTotal),
            rcv_buffer_ms=int(perf.msRcvBuf),
            snd_buffer_ms=int(perf.msSndBuf),
            flight_size=int(perf.pktFlightSize),
            latency_ms=int(perf.msRcvTsbPdDelay if receiver else perf.msSndTsbPdDelay),
        )
        interval = Interval(
            packets=int(perf.pktRecv if receiver else perf.pktSent),
            lost=int(perf.pktRcvLoss if receiver else perf.pktSndLoss),
            dropped=int(perf.pktRcvDrop if receiver else perf.pktSndDrop),
            rtt_ms=float(perf.msRTT),
        )
        return self.last, interval


@dataclass(frozen=True)
class Verdict:
    degraded: bool
    reasons: tuple[str, ...]
    loss_pct: float


class LinkJudge:
    def __init__(
        self,
        window: int = WINDOW,
        loss_limit_pct: float = LOSS_LIMIT_PCT,
        rtt_limit_ms: float = RTT_LIMIT_MS,
    ) -> None:
        self._samples: deque[Interval] = deque(maxlen=window)
        self.loss_limit_pct = loss_limit_pct
        self.rtt_limit_ms = rtt_limit_ms

    def add(self, interval: Interval) -> Verdict:
        self._samples.append(interval)
        return self.verdict()

    def verdict(self) -> Verdict:
        samples = list(self._samples)
        if not samples:
            return Verdict(False, (), 0.0)
        lost = sum(s.lost for s in samples)
        packets = sum(s.packets for s in samples)
        loss_pct = 100.0 * lost / (packets + lost) if packets + lost else 0.0
        reasons: list[str] = []
        if len(samples) >= MIN_SAMPLES and packets + lost >= MIN_PACKETS and loss_pct >= self.loss_limit_pct:
            reasons.append(f"packet loss {loss_pct:.1f}% >= {self.loss_limit_pct:g}%")
        rtts = [s.rtt_ms for s in samples if s.rtt_ms > 0]
        if len(rtts) >= MIN_SAMPLES and statistics.median(rtts) > self.rtt_limit_ms:
            reasons.append(f"median RTT {statistics.median(rtts):.0f} ms > {self.rtt_limit_ms:g} ms")
        dropped = sum(s.dropped for s in samples)
        if dropped:
            reasons.append(f"{dropped} packets dropped too late in the last {len(samples)} s")
        return Verdict(bool(reasons), tuple(reasons), round(loss_pct, 2))
