"""The RTMP chunk stream, sans-IO: messages split into chunks with compressed headers.

``ChunkReader.feed(bytes) -> [RtmpMessage]`` reassembles messages; ``encode_message`` and the hot-path
pair ``message_header`` + ``chunk_body`` produce chunks. We always write fmt 0 for the first chunk of a
message and fmt 3 for continuations, so our output never depends on what a peer remembers.

Reading follows the spec plus the convention ffmpeg and nginx-rtmp share where the spec is silent: a
fmt 3 chunk that starts a new message after a fmt 0 header reuses the fmt 0 timestamp field as its delta.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from .errors import ProtocolError

# message type ids
SET_CHUNK_SIZE: Final = 1
ABORT: Final = 2
ACK: Final = 3
USER_CONTROL: Final = 4
WINDOW_ACK_SIZE: Final = 5
SET_PEER_BANDWIDTH: Final = 6
AUDIO: Final = 8
VIDEO: Final = 9
DATA_AMF3: Final = 15
COMMAND_AMF3: Final = 17
DATA_AMF0: Final = 18
COMMAND_AMF0: Final = 20
AGGREGATE: Final = 22

# chunk stream ids we send on (any csid is accepted on input)
CSID_CONTROL: Final = 2  # protocol control and user control messages; the spec reserves csid 2
CSID_COMMAND: Final = 3  # AMF0 commands: connect, createStream, publish, _result, onStatus
CSID_AUDIO: Final = 4
CSID_DATA: Final = 5  # data messages: @setDataFrame onMetaData
CSID_VIDEO: Final = 6

DEFAULT_CHUNK_SIZE: Final = 128
MAX_CHUNK_SIZE: Final = 0x7FFFFFFF
MAX_MESSAGE_LENGTH: Final = 0xFFFFFF  # the 24-bit length field
EXTENDED_TIMESTAMP: Final = 0xFFFFFF
MIN_CSID: Final = 2
MAX_CSID: Final = 65599

_U32 = struct.Struct(">I")
_HEADER_SIZES: Final = (11, 7, 3, 0)  # message header size by fmt


@dataclass(frozen=True, slots=True)
class RtmpMessage:
    type_id: int
    timestamp: int  # 32-bit milliseconds as on the wire
    stream_id: int
    payload: bytes
    csid: int


# --- writing ---


def basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        if csid < MIN_CSID:
            raise ValueError(f"chunk stream id {csid} is reserved (valid: {MIN_CSID}..{MAX_CSID})")
        return bytes((fmt << 6 | csid,))
    if csid < 320:
        return bytes((fmt << 6, csid - 64))
    if csid <= MAX_CSID:
        rest = csid - 64
        return bytes((fmt << 6 | 1, rest & 0xFF, rest >> 8))
    raise ValueError(f"chunk stream id {csid} exceeds {MAX_CSID}")


def message_header(csid: int, type_id: int, timestamp: int, stream_id: int, length: int) -> bytes:
    """Basic header and fmt 0 message header for a whole message, with its extended timestamp if any."""
    if timestamp < 0:
        raise ValueError(f"RTMP timestamp {timestamp} is negative")
    if not 0 <= length <= MAX_MESSAGE_LENGTH:
        raise ValueError(f"RTMP message length {length} exceeds {MAX_MESSAGE_LENGTH}")
    if not 0 <= type_id <= 0xFF:
        raise ValueError(f"RTMP message type id {type_id} does not fit one byte")
    if not 0 <= stream_id <= 0xFFFFFFFF:
        raise ValueError(f"RTMP message stream id {stream_id} does not fit four bytes")
    timestamp &= 0xFFFFFFFF  # the wire carries milliseconds modulo 2**32
    out = bytearray(basic_header(0, csid))
    out += min(timestamp, EXTENDED_TIMESTAMP).to_bytes(3, "big")
    out += length.to_bytes(3, "big")
    out.append(type_id)
    out += stream_id.to_bytes(4, "little")
    if timestamp >= EXTENDED_TIMESTAMP:
        out += _U32.pack(timestamp)
    return bytes(out)


def chunk_body(payload: bytes, chunk_size: int, csid: int, extended_timestamp: int | None = None) -> bytes:
    """The payload with a fmt 3 basic header before every chunk after the first.

    Pass the message timestamp as ``extended_timestamp`` to repeat it on continuations as the spec
    requires; it is written only when the message header carried an extended timestamp (wire value
    >= 0xFFFFFF), so passing it is always safe.
    """
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk size {chunk_size} is outside 1..{MAX_CHUNK_SIZE}")
    size = len(payload)
    if size <= chunk_size:
        return bytes(payload)
    separator = basic_header(3, csid)
    if extended_timestamp is not None and (extended_timestamp & 0xFFFFFFFF) >= EXTENDED_TIMESTAMP:
        separator += _U32.pack(extended_timestamp & 0xFFFFFFFF)
    view = memoryview(payload)
    return separator.join([view[i : i + chunk_size] for i in range(0, size, chunk_size)])


def encode_message(
    csid: int, type_id: int, timestamp: int, stream_id: int, payload: bytes, chunk_size: int
) -> bytes:
    header = message_header(csid, type_id, timestamp, stream_id, len(payload))
    return header + chunk_body(payload, chunk_size, csid, timestamp)


# --- reading ---


class _ChunkStream:
    """What one chunk stream id remembers between chunks, and the message it is reassembling."""

    __slots__ = ("delta", "extended", "length", "parts", "received", "stream_id", "timestamp", "type_id")

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.extended = False  # the last fmt 0/1/2 header used an extended timestamp
        self.parts: list[memoryview] | None = None  # not None while a message is incomplete
        self.received = 0


class ChunkReader:
    """Reassembles RTMP messages from chunks.

    Set Chunk Size and Abort messages take effect inside ``feed`` as soon as they complete (later
    chunks of the same read depend on them); they are still returned. Payload bytes are consumed as
    they arrive, so only an incomplete chunk header (at most 18 bytes) is carried between reads.
    """

    def __init__(self, max_message_size: int = 8 * 1024 * 1024, max_chunk_streams: int = 64) -> None:
        self.max_message_size = max_message_size
        self.max_chunk_streams = max_chunk_streams
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._streams: dict[int, _ChunkStream] = {}
        self._pending = b""  # an incomplete chunk header left by the previous feed
        self._body: _ChunkStream | None = None  # stream whose chunk payload is being read
        self._body_csid = 0
        self._body_left = 0
        self._buffered = 0  # payload bytes held in incomplete messages, all streams together

    def set_chunk_size(self, size: int) -> None:
        if size & 0x80000000:
            raise ProtocolError(f"set chunk size 0x{size:08x} has the reserved high bit set")
        if size < 1:
            raise ProtocolError(f"set chunk size {size} is below 1")
        self.chunk_size = size

    def abort(self, csid: int) -> None:
        stream = self._streams.get(csid)
        if stream is not None and stream.parts is not None:
            self._buffered -= stream.received
            stream.parts = None
            stream.received = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[RtmpMessage]:
        if self._pending:
            data = self._pending + bytes(data)
            self._pending = b""
        elif not isinstance(data, bytes):
            data = bytes(data)  # payload views outlive this call: never keep a mutable buffer
        view = memoryview(data)
        end = len(data)
        pos = 0
        messages: list[RtmpMessage] = []
        while pos < end:
            if self._body is None:
                next_pos = self._read_header(data, pos, end, messages)
                if next_pos < 0:
                    self._pending = data[pos:]
                    break
                pos = next_pos
                continue
            stream = self._body
            take = min(self._body_left, end - pos)
            assert stream.parts is not None
            stream.parts.append(view[pos : pos + take])
            stream.received += take
            self._buffered += take
            pos += take
            self._body_left -= take
            if self._body_left == 0:
                self._body = None
                if stream.received == stream.length:
                    messages.append(self._complete(stream, self._body_csid))
        return messages

    def _read_header(self, data: bytes, pos: int, end: int, messages: list[RtmpMessage]) -> int:
        """Parse one chunk header at ``pos``: the offset of its payload, or -1 if it is incomplete.

        Nothing is changed until the whole header is present, so an incomplete one is re-read later.
        """
        first = data[pos]
        fmt = first >> 6
        csid = first & 0x3F
        p = pos + 1
        if csid == 0:
            if p + 1 > end:
                return -1
            csid = 64 + data[p]
            p += 1
        elif csid == 1:
            if p + 2 > end:
                return -1
            csid = 64 + data[p] + (data[p + 1] << 8)
            p += 2
        size = _HEADER_SIZES[fmt]
        if p + size > end:
            return -1
        stream = self._streams.get(csid)
        in_message = stream is not None and stream.parts is not None
        if fmt == 3:
            extended = stream is not None and stream.extended
            field = 0
            if extended:
                if p + 4 > end:
                    return -1
                field = _U32.unpack_from(data, p)[0]
                p += 4
        else:
            if in_message:
                assert stream is not None
                raise ProtocolError(
                    f"chunk stream {csid} got a fmt {fmt} header inside a message "
                    f"({stream.received} of {stream.length} bytes received)"
                )
            field = int.from_bytes(data[p : p + 3], "big")
            extended = field == EXTENDED_TIMESTAMP
            if extended:
                if p + size + 4 > end:
                    return -1
                field = _U32.unpack_from(data, p + size)[0]
        if stream is None:
            if len(self._streams) >= self.max_chunk_streams:
                raise ProtocolError(f"more than {self.max_chunk_streams} chunk streams (csid {csid})")
            stream = self._streams[csid] = _ChunkStream()  # a new csid starts from zeroed state, as in ffmpeg
        if fmt < 3:
            if fmt <= 1:
                length = int.from_bytes(data[p + 3 : p + 6], "big")
                if length > self.max_message_size:
                    raise ProtocolError(
                        f"chunk message length {length} exceeds limit {self.max_message_size}"
                    )
                stream.length = length
                stream.type_id = data[p + 6]
            if fmt == 0:
                stream.stream_id = int.from_bytes(data[p + 7 : p + 11], "little")
                stream.timestamp = field
            else:
                stream.timestamp = (stream.timestamp + field) & 0xFFFFFFFF
            stream.delta = field
            stream.extended = extended
            p += size + (4 if extended else 0)
        elif not in_message:
            if extended:
                stream.delta = field
            stream.timestamp = (stream.timestamp + stream.delta) & 0xFFFFFFFF
        if not in_message:
            stream.parts = []
            stream.received = 0
        take = min(self.chunk_size, stream.length - stream.received)
        if take == 0:  # a zero-length message has no chunk payload
            messages.append(self._complete(stream, csid))
            return p
        if self._buffered + take > 2 * self.max_message_size:
            raise ProtocolError(f"incomplete messages hold more than {2 * self.max_message_size} bytes")
        self._body = stream
        self._body_csid = csid
        self._body_left = take
        return p

    def _complete(self, stream: _ChunkStream, csid: int) -> RtmpMessage:
        parts = stream.parts or []
        payload = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
        self._buffered -= stream.received
        stream.parts = None
        stream.received = 0
        message = RtmpMessage(stream.type_id, stream.timestamp, stream.stream_id, payload, csid)
        if stream.type_id == SET_CHUNK_SIZE:
            self.set_chunk_size(_control_value(payload, "set chunk size"))
        elif stream.type_id == ABORT:
            self.abort(_control_value(payload, "abort"))
        return message


def _control_value(payload: bytes, what: str) -> int:
    if len(payload) < 4:
        raise ProtocolError(f"{what} message has {len(payload)} bytes, needs 4")
    value: int = _U32.unpack_from(payload)[0]
    return value
