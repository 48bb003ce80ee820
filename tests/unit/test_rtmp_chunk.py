"""The chunk stream: header layouts, round trips over sizes, csids and timestamps, and hand-written
fmt 1/2/3 fixtures."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from shared.rtmp import chunk
from shared.rtmp.chunk import ChunkReader, RtmpMessage
from shared.rtmp.errors import ProtocolError

GOLDEN = Path(__file__).parent / "golden"


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def feed_all(reader: ChunkReader, data: bytes, step: int = 0) -> list[RtmpMessage]:
    if not step:
        return reader.feed(data)
    out: list[RtmpMessage] = []
    for i in range(0, len(data), step):
        out += reader.feed(data[i : i + step])
    return out


def reader_with_chunk_size(size: int) -> ChunkReader:
    reader = ChunkReader()
    reader.set_chunk_size(size)
    return reader


@pytest.mark.parametrize(
    ("csid", "fmt", "expected"),
    [
        (2, 0, "02"),
        (3, 3, "c3"),
        (63, 1, "7f"),
        (64, 0, "00 00"),
        (319, 2, "80 ff"),
        (320, 0, "01 00 01"),
        (65599, 3, "c1 ff ff"),
    ],
)
def test_basic_header(csid: int, fmt: int, expected: str) -> None:
    assert chunk.basic_header(fmt, csid) == h(expected)


@pytest.mark.parametrize("csid", [0, 1, 65600])
def test_basic_header_rejects_reserved_and_too_large_csids(csid: int) -> None:
    with pytest.raises(ValueError, match=f"chunk stream id {csid}"):
        chunk.basic_header(0, csid)


def test_message_header_layout() -> None:
    assert chunk.message_header(4, chunk.AUDIO, 1000, 1, 300) == h("04 0003e8 00012c 08 01000000")
    assert chunk.message_header(6, chunk.VIDEO, 0x1234567, 1, 5) == h("06 ffffff 000005 09 01000000 01234567")


def test_message_header_sends_64_bit_times_modulo_2_32() -> None:
    assert chunk.message_header(4, 8, 2**32 + 5, 1, 0) == chunk.message_header(4, 8, 5, 1, 0)


@pytest.mark.parametrize("timestamp", [5, 0xFFFFFE, 0xFFFFFF, 0xFFFFFFFF, 2**32 + 5, 2**32 + 0x1000000])
def test_passing_the_timestamp_to_chunk_body_is_always_consistent(timestamp: int) -> None:
    payload = PATTERN[:1000]
    wire = chunk.message_header(6, 9, timestamp, 1, 1000) + chunk.chunk_body(payload, 128, 6, timestamp)
    assert wire == chunk.encode_message(6, 9, timestamp, 1, payload, 128)
    assert reader_with_chunk_size(128).feed(wire) == [RtmpMessage(9, timestamp & 0xFFFFFFFF, 1, payload, 6)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((4, 8, -1, 1, 0), "timestamp -1 is negative"),
        ((4, 8, 0, 1, 0x1000000), "length 16777216 exceeds 16777215"),
        ((4, 256, 0, 1, 0), "type id 256"),
        ((4, 8, 0, 2**32, 0), "stream id 4294967296"),
    ],
)
def test_message_header_rejects_unencodable_values(
    args: tuple[int, int, int, int, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        chunk.message_header(*args)


def test_encode_message_inserts_continuation_headers() -> None:
    data = chunk.encode_message(3, chunk.COMMAND_AMF0, 0, 0, b"abcdefg", 3)
    assert data == h("03 000000 000007 14 00000000") + b"abc" + b"\xc3def" + b"\xc3g"


def test_encode_message_repeats_the_extended_timestamp_on_continuations() -> None:
    data = chunk.encode_message(70, 9, 0x01000000, 1, b"abcde", 4)
    assert data == h("00 06 ffffff 000005 09 01000000 01000000") + b"abcd" + h("c0 06 01000000") + b"e"


SIZES = (1, 2, 127, 128, 129, 4096, 65536)
CSIDS = (2, 3, 63, 64, 65, 319, 320, 321, 65599)
TIMESTAMPS = (0, 1, 0xFFFFFE, 0xFFFFFF, 0x1000000, 0xFFFFFFFF)
PATTERN = bytes(range(251)) * 800  # a prime period, so a misplaced chunk shows


@pytest.mark.parametrize("chunk_size", SIZES)
def test_round_trip_over_sizes_csids_and_timestamps(chunk_size: int) -> None:
    lengths = sorted({0, 1, chunk_size - 1, chunk_size, chunk_size + 1, 3 * chunk_size + 1})
    for csid, timestamp, length in itertools.product(CSIDS, TIMESTAMPS, lengths):
        payload = PATTERN[:length]
        wire = chunk.encode_message(csid, chunk.VIDEO, timestamp, 1, payload, chunk_size)
        extended = timestamp if timestamp >= 0xFFFFFF else None
        assert (
            chunk.message_header(csid, chunk.VIDEO, timestamp, 1, length)
            + chunk.chunk_body(payload, chunk_size, csid, extended)
            == wire
        )
        expected = [RtmpMessage(chunk.VIDEO, timestamp, 1, payload, csid)]
        assert reader_with_chunk_size(chunk_size).feed(wire) == expected


@pytest.mark.parametrize("step", [1, 2, 5, 17, 1000])
def test_round_trip_in_small_reads(step: int) -> None:
    messages = [
        RtmpMessage(chunk.VIDEO, 0x1000000 + i, 1, bytes(range(256)) * (i + 1), 6 if i % 2 else 320)
        for i in range(4)
    ]
    wire = b"".join(
        chunk.encode_message(m.csid, m.type_id, m.timestamp, m.stream_id, m.payload, 100) for m in messages
    )
    assert feed_all(reader_with_chunk_size(100), wire, step) == messages


def test_fmt_1_2_3_compression() -> None:
    """Written by hand: one audio stream on csid 4 using every header type, as encoders do."""
    wire = (
        h("04 0003e8 000003 08 01000000") + b"abc"  # fmt 0: t=1000, 3 bytes, audio, stream 1
        + h("44 000014 000002 08") + b"de"  # fmt 1: +20 -> 1020, new length
        + h("84 00001e") + b"fg"  # fmt 2: +30 -> 1050, same length
        + h("c4") + b"hi"  # fmt 3 starting a message: +30 again -> 1080
        + h("c4") + b"jk"  # -> 1110
    )  # fmt: skip
    assert ChunkReader().feed(wire) == [
        RtmpMessage(8, 1000, 1, b"abc", 4),
        RtmpMessage(8, 1020, 1, b"de", 4),
        RtmpMessage(8, 1050, 1, b"fg", 4),
        RtmpMessage(8, 1080, 1, b"hi", 4),
        RtmpMessage(8, 1110, 1, b"jk", 4),
    ]


def test_fmt_3_after_fmt_0_reuses_the_timestamp_field_as_delta() -> None:
    """The ffmpeg / nginx-rtmp reading of a case the spec leaves open."""
    wire = h("05 000064 000001 12 01000000") + b"x" + h("c5") + b"y"
    assert [m.timestamp for m in ChunkReader().feed(wire)] == [100, 200]


def test_continuations_and_extended_timestamps() -> None:
    wire = (
        h("02 000000 000004 01 00000000 00000004")  # Set Chunk Size 4
        + h("06 ffffff 000006 09 01000000 01000000") + b"abcd"  # extended t=0x01000000, first chunk
        + h("c6 01000000") + b"ef"  # continuation repeats the extended timestamp
        + h("46 ffffff 000001 09 00000010") + b"g"  # fmt 1 with an extended delta of 16
        + h("c6 00000010") + b"h"  # fmt 3 new message: extended delta again
    )  # fmt: skip
    reader = ChunkReader()
    messages = reader.feed(wire)
    assert reader.chunk_size == 4
    assert [(m.type_id, m.timestamp, m.payload) for m in messages] == [
        (chunk.SET_CHUNK_SIZE, 0, h("00000004")),
        (chunk.VIDEO, 0x01000000, b"abcdef"),
        (chunk.VIDEO, 0x01000010, b"g"),
        (chunk.VIDEO, 0x01000020, b"h"),
    ]


def test_timestamps_wrap_at_32_bits() -> None:
    wire = h("06 ffffff 000001 09 01000000 fffffff0") + b"a" + h("86 000020") + b"b"
    assert [m.timestamp for m in ChunkReader().feed(wire)] == [0xFFFFFFF0, 0x10]


def test_interleaved_chunk_streams() -> None:
    video = chunk.encode_message(6, chunk.VIDEO, 40, 1, b"V" * 300, 128)
    audio = chunk.encode_message(4, chunk.AUDIO, 23, 1, b"A" * 200, 128)
    # split each at chunk boundaries and interleave: V1 A1 V2 A2 V3
    v = [video[: 12 + 128], video[140 : 140 + 129], video[269:]]
    a = [audio[: 12 + 128], audio[140:]]
    wire = v[0] + a[0] + v[1] + a[1] + v[2]
    messages = ChunkReader().feed(wire)
    assert [(m.csid, m.timestamp, m.payload) for m in messages] == [(4, 23, b"A" * 200), (6, 40, b"V" * 300)]


def test_set_chunk_size_applies_to_the_rest_of_the_same_read() -> None:
    wire = chunk.encode_message(2, chunk.SET_CHUNK_SIZE, 0, 0, h("00001000"), 128)
    wire += chunk.encode_message(6, chunk.VIDEO, 0, 1, b"x" * 4000, 4096)
    messages = ChunkReader().feed(wire)
    assert messages[1].payload == b"x" * 4000


def test_abort_drops_the_partial_message() -> None:
    reader = ChunkReader()
    assert reader.feed(h("06 000000 0000c8 09 01000000") + bytes(128)) == []  # 128 of 200 bytes
    abort = chunk.encode_message(2, chunk.ABORT, 0, 0, h("00000006"), 128)
    fresh = h("06 000005 000002 09 01000000") + b"ok"
    messages = reader.feed(abort + fresh)
    assert [(m.type_id, m.payload) for m in messages] == [(chunk.ABORT, h("00000006")), (chunk.VIDEO, b"ok")]


def test_zero_length_message() -> None:
    assert ChunkReader().feed(h("03 000000 000000 14 00000000")) == [RtmpMessage(20, 0, 0, b"", 3)]


def test_new_csid_without_fmt_0_starts_from_zeroed_state() -> None:
    """librtmp may open a chunk stream with fmt 1; ffmpeg and nginx-rtmp accept it with stream id 0."""
    assert ChunkReader().feed(h("44 000010 000001 08") + b"a") == [RtmpMessage(8, 16, 0, b"a", 4)]


def test_golden_ffmpeg_stream_reassembles_in_any_read_size() -> None:
    data = (GOLDEN / "ffmpeg_publish.bin").read_bytes()[3073:]  # after C0+C1 and C2
    whole = ChunkReader().feed(data)
    assert [m.type_id for m in whole[:7]] == [20, 1, 20, 20, 20, 20, 18]
    assert sum(m.type_id == chunk.VIDEO for m in whole) == 7  # sequence header, 5 frames, end of sequence
    assert sum(m.type_id == chunk.AUDIO for m in whole) == 26
    for step in (1, 7, 100, 1500):
        assert feed_all(ChunkReader(), data, step) == whole


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (h("06 000000 800001 09 01000000"), "chunk message length 8388609 exceeds limit 8388608"),
        (h("02 000000 000004 01 00000000 00000000"), "set chunk size 0 is below 1"),
        (
            h("02 000000 000004 01 00000000 80000010"),
            "set chunk size 0x80000010 has the reserved high bit set",
        ),
        (h("02 000000 000002 01 00000000 0000"), "set chunk size message has 2 bytes, needs 4"),
        (h("02 000000 000001 02 00000000 00"), "abort message has 1 bytes, needs 4"),
        (
            h("06 000000 0000c8 09 01000000") + bytes(128) + h("06 000000 000001 09 01000000"),
            "fmt 0 header inside",
        ),
    ],
)
def test_malformed_streams_raise_protocol_error(wire: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        ChunkReader().feed(wire)


def test_too_many_chunk_streams() -> None:
    reader = ChunkReader(max_chunk_streams=3)
    reader.feed(b"".join(h(f"{csid:02x} 000000 000000 08 01000000") for csid in (3, 4, 5)))
    with pytest.raises(ProtocolError, match="more than 3 chunk streams \\(csid 6\\)"):
        reader.feed(h("06 000000 000000 08 01000000"))


def test_incomplete_messages_are_bounded_together() -> None:
    reader = ChunkReader(max_message_size=1000)
    reader.set_chunk_size(900)
    reader.feed(h("04 000000 0003e8 08 01000000") + bytes(900))
    reader.feed(h("06 000000 0003e8 09 01000000") + bytes(900))
    with pytest.raises(ProtocolError, match="incomplete messages hold more than 2000 bytes"):
        reader.feed(h("05 000000 0003e8 12 01000000"))


def test_chunk_body_rejects_bad_chunk_size() -> None:
    with pytest.raises(ValueError, match="chunk size 0"):
        chunk.chunk_body(b"x", 0, 3)
