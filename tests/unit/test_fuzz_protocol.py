"""Fuzzing the protocol cores: whatever arrives, they raise ProtocolError / ValueError or nothing else.

Arbitrary bytes and mutated captures of real peers go into the sessions, the chunk reader, the AMF0
decoder and the FLV demuxer; encoders are checked by round trip.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.flv import FlvDemuxer
from shared.rtmp import amf0, chunk
from shared.rtmp.chunk import ChunkReader, RtmpMessage
from shared.rtmp.client_session import ClientSession
from shared.rtmp.errors import ProtocolError
from shared.rtmp.server_session import MediaReceived, PublishRequested, ServerSession

GOLDEN = Path(__file__).parent / "golden"
FFMPEG = (GOLDEN / "ffmpeg_publish.bin").read_bytes()
NGINX = (GOLDEN / "nginx_replies.bin").read_bytes()
HANDSHAKE = 1 + 2 * 1536
AVCC = bytes.fromhex("0164000affe100186764000aacd9447b0110000003001000000303c0f122596001000668ebe3cb22c0")

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@st.composite
def mutated(draw: st.DrawFn, data: bytes, start: int) -> bytes:
    """``data`` with a few bytes flipped, inserted or deleted after ``start``."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(start, len(out) - 1))
        op = draw(st.sampled_from(("set", "insert", "delete", "truncate")))
        value = draw(st.integers(0, 255))
        if op == "set":
            out[pos] = value
        elif op == "insert":
            out[pos:pos] = bytes((value,)) * draw(st.integers(1, 8))
        elif op == "delete":
            del out[pos : pos + draw(st.integers(1, 8))]
        else:
            del out[pos:]
        if len(out) <= start + 1:
            break
    return bytes(out)


def run_server(data: bytes, cuts: list[int]) -> None:
    """A shell's view: accept any publish, demux the media, and only ever see ProtocolError/ValueError."""
    server = ServerSession()
    demuxer = FlvDemuxer()
    try:
        for piece in split(data, cuts):
            server.receive_data(piece)
            server.data_to_send()
            while (event := server.next_event()) is not None:
                if isinstance(event, PublishRequested):
                    server.accept_publish()
                elif isinstance(event, MediaReceived):
                    feed_demuxer(demuxer, event.type_id, event.timestamp, event.payload)
    except ProtocolError:
        pass


def feed_demuxer(demuxer: FlvDemuxer, type_id: int, timestamp: int, payload: bytes) -> None:
    try:
        if type_id == chunk.VIDEO:
            demuxer.on_video(timestamp, payload)
        elif type_id == chunk.AUDIO:
            demuxer.on_audio(timestamp, payload)
        else:
            demuxer.on_data(timestamp, payload)
    except ValueError:  # UnsupportedCodec and ProtocolError included
        pass


@FUZZ
@given(st.binary(max_size=4000), st.lists(st.integers(0, 5000), max_size=5))
def test_server_survives_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    run_server(data, cuts)


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=5))
def test_server_survives_arbitrary_chunk_streams(data: bytes, cuts: list[int]) -> None:
    run_server(FFMPEG[:HANDSHAKE] + data, cuts)


@FUZZ
@given(mutated(FFMPEG, HANDSHAKE), st.lists(st.integers(0, 9000), max_size=4))
def test_server_survives_mutated_ffmpeg_publish(data: bytes, cuts: list[int]) -> None:
    run_server(data, cuts)


@FUZZ
@given(mutated(NGINX, HANDSHAKE), st.lists(st.integers(0, 4000), max_size=4))
def test_client_survives_mutated_nginx_replies(data: bytes, cuts: list[int]) -> None:
    client = ClientSession("live", "out1", "rtmp://127.0.0.1/live")
    client.initiate()
    try:
        for piece in split(data, cuts):
            client.receive_data(piece)
            client.data_to_send()
            while client.next_event() is not None:
                pass
    except ProtocolError:
        pass


@FUZZ
@given(st.binary(max_size=2000))
def test_client_survives_arbitrary_chunk_streams(data: bytes) -> None:
    client = ClientSession("live", "out1", "rtmp://127.0.0.1/live")
    client.initiate()
    try:
        client.receive_data(NGINX[:HANDSHAKE] + data)
    except ProtocolError:
        pass


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=5))
def test_chunk_reader_survives_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    reader = ChunkReader(max_message_size=100_000)
    try:
        for piece in split(data, cuts):
            reader.feed(piece)
    except ProtocolError:
        pass


@st.composite
def messages(draw: st.DrawFn) -> RtmpMessage:
    return RtmpMessage(
        type_id=draw(
            st.sampled_from((chunk.AUDIO, chunk.VIDEO, chunk.DATA_AMF0, chunk.COMMAND_AMF0, chunk.ACK))
        ),
        timestamp=draw(st.one_of(st.integers(0, 0x1000010), st.integers(0xFFFFFF00, 0xFFFFFFFF))),
        stream_id=draw(st.integers(0, 0xFFFFFFFF)),
        payload=draw(st.binary(max_size=700)),
        csid=draw(st.one_of(st.integers(2, 70), st.integers(300, 330), st.just(65599))),
    )


@FUZZ
@given(st.lists(messages(), max_size=8), st.integers(1, 1000), st.lists(st.integers(0, 10000), max_size=6))
def test_chunk_round_trip(sent: list[RtmpMessage], chunk_size: int, cuts: list[int]) -> None:
    wire = b"".join(
        chunk.encode_message(m.csid, m.type_id, m.timestamp, m.stream_id, m.payload, chunk_size) for m in sent
    )
    reader = ChunkReader()
    reader.set_chunk_size(chunk_size)
    received: list[RtmpMessage] = []
    for piece in split(wire, cuts):
        received += reader.feed(piece)
    assert received == sent


@FUZZ
@given(st.binary(max_size=500))
def test_amf0_decode_survives_arbitrary_bytes(data: bytes) -> None:
    try:
        amf0.decode_all(data)
    except ProtocolError:
        pass


keys = st.text(max_size=8)
scalars = st.one_of(
    st.none(),
    st.just(amf0.UNDEFINED),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.builds(amf0.Amf0Date, st.floats(allow_nan=False), st.integers(-32768, 32767)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4).map(amf0.EcmaArray),
    ),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict):
        return type(a) is type(b) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b) and type(a) is type(b)


@FUZZ
@given(st.lists(values, max_size=4))
def test_amf0_round_trip(sent: list[Any]) -> None:
    data = amf0.encode(*sent)
    decoded = amf0.decode_all(data)
    assert same(sent, decoded)
    assert amf0.encode(*decoded) == data


@FUZZ
@given(st.sampled_from(("video", "audio", "data")), st.binary(max_size=300), st.booleans())
def test_flv_demuxer_survives_arbitrary_bodies(kind: str, body: bytes, configured: bool) -> None:
    demuxer = FlvDemuxer()
    if configured:
        demuxer.on_video(0, b"\x17\x00\x00\x00\x00" + AVCC)
        demuxer.on_audio(0, b"\xaf\x00\x12\x10")
    type_id = {"video": chunk.VIDEO, "audio": chunk.AUDIO, "data": chunk.DATA_AMF0}[kind]
    feed_demuxer(demuxer, type_id, 0, body)


@FUZZ
@given(st.binary(max_size=300))
def test_flv_sequence_headers_survive_arbitrary_configs(config: bytes) -> None:
    demuxer = FlvDemuxer()
    feed_demuxer(demuxer, chunk.VIDEO, 0, b"\x17\x00\x00\x00\x00" + config)
    feed_demuxer(demuxer, chunk.AUDIO, 0, b"\xaf\x00" + config)
    feed_demuxer(demuxer, chunk.VIDEO, 0, b"\x17\x01\x00\x00\x00" + config)
