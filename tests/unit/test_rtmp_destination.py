"""The destination's media path: the transport buffer is a bounded queue; past the class's high-water mark
it drops to the next keyframe under the low one, counts what it dropped, and never drops headers."""

from __future__ import annotations

from typing import Any

import pytest

from services.output.policy import CLASSES, ProgramFacts
from services.output.prepared import Prepared
from services.output.reconnect_gate import ReconnectGate
from services.output.rtmp_destination import RtmpDestination, wire_bytes
from shared.messages import OutputSpec
from shared.rtmp import chunk

KEY = "sk-0123456789abcdef"


class FakeTransport:
    def __init__(self) -> None:
        self.buffered = 0
        self.written: list[bytes] = []

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)


class FakeWriter:
    def __init__(self) -> None:
        self.transport = FakeTransport()

    def write(self, data: bytes) -> None:
        self.transport.write(data)


class Program:
    def __init__(self, bitrate_bps: int = 8_000_000) -> None:
        self.bitrate_bps = bitrate_bps

    def attach(self, dest: Any) -> None: ...
    def detach(self, dest: Any) -> None: ...
    def facts(self) -> ProgramFacts:
        return ProgramFacts(bitrate_bps=self.bitrate_bps, keyframe_interval_s=4.0)


@pytest.fixture
def dest() -> RtmpDestination:
    spec = OutputSpec(id="out_1", name="yt", url=f"rtmp://dest.example.com/live/{KEY}")
    d = RtmpDestination(
        "tn", "ev", spec, CLASSES["B"], Program(), ReconnectGate(2), on_status=lambda s: None, worker="w"
    )
    d._writer = FakeWriter()  # type: ignore[assignment]
    d._transport = d._writer.transport  # type: ignore[union-attr]
    d._live = True
    d.begin(0)
    d.tick(0.0)  # class B at 1 MB/s: a 4 MB queue, resume under 1 MB
    return d


def frame(ts: int, keyframe: bool = False, type_id: int = chunk.VIDEO) -> Prepared:
    return Prepared.make(type_id, ts, b"\x17\x01" + bytes(100), keyframe)


def test_queue_limits_come_from_the_class_and_the_program_bitrate(dest: RtmpDestination) -> None:
    assert (dest._high, dest._low) == (4_000_000, 1_000_000)
    assert dest.warnings == [
        "keyframe interval 4.0 s exceeds the class B limit of 2 s",
        "bitrate 8.0 Mbit/s exceeds the class B cap of 6 Mbit/s",
    ]


def test_a_full_queue_drops_to_the_next_keyframe_and_counts(dest: RtmpDestination) -> None:
    transport = dest._writer.transport  # type: ignore[union-attr]
    dest.send(frame(0, keyframe=True))
    transport.buffered = 4_000_001  # past high water
    dest.send(frame(33))
    dest.send(frame(40, type_id=chunk.AUDIO))
    transport.buffered = 500_000  # drained below low water, but this is not a keyframe
    dest.send(frame(66))
    dest.send(Prepared.make(chunk.VIDEO, 70, b"\x17\x00config", False), header=True)  # headers always go
    assert (dest.frames_dropped, dest.drop_events) == (3, 1)
    transport.buffered = 1_500_000  # a keyframe, but still above low water: keep dropping
    dest.send(frame(2000, keyframe=True))
    transport.buffered = 900_000
    dest.send(frame(4000, keyframe=True))  # a keyframe under low water: resume here
    dest.send(frame(4033))
    assert (dest.frames_dropped, dest.drop_events, dest.frames_sent) == (4, 1, 4)
    status = dest.status()
    assert status.frames_dropped == 4 and status.drop_events == 1 and status.queued_bytes == 900_000


def make_dest(base_ts: int) -> RtmpDestination:
    spec = OutputSpec(id=f"out_{base_ts}", name="yt", url=f"rtmp://dest.example.com/live/{KEY}")
    d = RtmpDestination(
        "tn", "ev", spec, CLASSES["B"], Program(), ReconnectGate(2), on_status=lambda s: None, worker="w"
    )
    d._writer = FakeWriter()  # type: ignore[assignment]
    d._transport = d._writer.transport  # type: ignore[union-attr]
    d._live = True
    d.begin(base_ts)
    d.tick(0.0)
    return d


def test_destinations_that_started_together_share_one_message_per_pass() -> None:
    together = [make_dest(1000), make_dest(1000)]
    later = make_dest(3000)
    item = Prepared.make(chunk.VIDEO, 5000, b"\x27\x01" + bytes(5000), False)
    wire: dict[tuple[int, int], bytes] = {}
    for d in [*together, later]:
        d.send(item, wire=wire)
    (a,), (b,), (c,) = (d._writer.transport.written for d in [*together, later])  # type: ignore[union-attr]
    assert a is b  # built once, written twice
    assert a == wire_bytes(item, 4000, together[0]._stream_id)
    assert c == wire_bytes(item, 2000, later._stream_id) and c != a
    # the same bytes as a destination writing alone, timestamp in the message header
    alone = make_dest(1000)
    alone.send(item)
    assert alone._writer.transport.written == [a]  # type: ignore[union-attr]
    assert int.from_bytes(a[1:4], "big") == 4000 and int.from_bytes(c[1:4], "big") == 2000
    assert len(wire) == 2 and all(d.frames_sent == 1 for d in [*together, later])


def test_errors_never_show_the_stream_key(dest: RtmpDestination) -> None:
    text = dest._scrub(f"connect to rtmp://dest.example.com/live/{KEY} failed: {KEY} refused")
    assert KEY not in text and "cdef" in text
    assert dest.safe_url.endswith("****cdef")
