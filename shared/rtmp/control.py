"""Protocol control, user control and command messages, and the chunk-stream duties both roles share.

Payload builders and parsers are pure functions. ``Endpoint`` holds what a server session and a client
session have in common: the chunk reader, the outgoing buffer and chunk size, byte counting,
Acknowledgements once the peer's window is crossed, and PingRequest -> PingResponse.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, Final

from . import amf0
from .chunk import (
    ABORT,
    ACK,
    COMMAND_AMF0,
    COMMAND_AMF3,
    CSID_COMMAND,
    CSID_CONTROL,
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH,
    USER_CONTROL,
    WINDOW_ACK_SIZE,
    ChunkReader,
    RtmpMessage,
    encode_message,
)
from .errors import ProtocolError

# user control event types
STREAM_BEGIN: Final = 0
STREAM_EOF: Final = 1
STREAM_DRY: Final = 2
SET_BUFFER_LENGTH: Final = 3
STREAM_IS_RECORDED: Final = 4
PING_REQUEST: Final = 6
PING_RESPONSE: Final = 7

# Set Peer Bandwidth limit types
LIMIT_HARD: Final = 0
LIMIT_SOFT: Final = 1
LIMIT_DYNAMIC: Final = 2

_U32 = struct.Struct(">I")
_USER_CONTROL_HEAD = struct.Struct(">H")


# --- protocol control payloads ---


def u32_payload(value: int) -> bytes:
    """Payload of Set Chunk Size, Abort, Acknowledgement and Window Acknowledgement Size."""
    return _U32.pack(value & 0xFFFFFFFF)


def set_peer_bandwidth(size: int, limit_type: int = LIMIT_DYNAMIC) -> bytes:
    return _U32.pack(size) + bytes((limit_type,))


def user_control(event_type: int, *values: int) -> bytes:
    return _USER_CONTROL_HEAD.pack(event_type) + b"".join(_U32.pack(v & 0xFFFFFFFF) for v in values)


def parse_u32(payload: bytes, what: str) -> int:
    if len(payload) < 4:
        raise ProtocolError(f"{what} message has {len(payload)} bytes, needs 4")
    value: int = _U32.unpack_from(payload)[0]
    return value


def parse_user_control(payload: bytes) -> tuple[int, bytes]:
    """The event type and its event data."""
    if len(payload) < 2:
        raise ProtocolError(f"user control message has {len(payload)} bytes, needs at least 2")
    event_type: int = _USER_CONTROL_HEAD.unpack_from(payload)[0]
    return event_type, payload[2:]


# --- command messages ---


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    transaction_id: float
    command_object: Any = None
    args: list[Any] = field(default_factory=list)


def encode_command(name: str, transaction_id: float, command_object: Any = None, *args: Any) -> bytes:
    return amf0.encode(name, float(transaction_id), command_object, *args)


def parse_command(payload: bytes, type_id: int = COMMAND_AMF0) -> Command:
    """An AMF0 command; an AMF3 command message is AMF0 after one leading format byte."""
    if type_id == COMMAND_AMF3 and payload[:1] == b"\x00":
        payload = payload[1:]
    values = amf0.decode_all(payload)
    if not values or not isinstance(values[0], str):
        raise ProtocolError("command message does not start with a command name string")
    # peers disagree on what follows a name: tolerate a missing or odd transaction id
    transaction = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
    command_object = values[2] if len(values) > 2 else None
    return Command(values[0], transaction, command_object, values[3:])


def info_object(command: Command) -> dict[str, Any]:
    """The info object of an onStatus or _error: first object among the arguments, else the command
    object (some servers put it there)."""
    for value in (*command.args, command.command_object):
        if isinstance(value, dict):
            return value
    return {}


def text(value: Any) -> str:
    """A string property from a peer's object, or "" when absent or of another type."""
    return value if isinstance(value, str) else ""


# --- shared chunk-stream duties ---


class Endpoint:
    """One side of an RTMP connection after the handshake: chunk I/O plus protocol control duties.

    ``peer_window_ack_size`` is the window the peer asked us to acknowledge at (its Window Ack Size);
    ``acked_bytes`` is the peer's last Acknowledgement of what we sent.
    """

    def __init__(self, max_message_size: int) -> None:
        self.reader = ChunkReader(max_message_size=max_message_size)
        self.chunk_size_out = DEFAULT_CHUNK_SIZE
        self.bytes_received = 0
        self.peer_window_ack_size = 0
        self.peer_bandwidth = 0
        self.peer_bandwidth_limit_type = LIMIT_DYNAMIC
        self.acked_bytes = 0
        self._acked_up_to = 0
        self._out = bytearray()

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def queue_raw(self, data: bytes) -> None:
        self._out += data

    def send(self, csid: int, type_id: int, payload: bytes, stream_id: int = 0, timestamp: int = 0) -> None:
        self._out += encode_message(csid, type_id, timestamp, stream_id, payload, self.chunk_size_out)

    def send_chunk_size(self, size: int) -> None:
        if not 1 <= size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size {size} is outside 1..{MAX_CHUNK_SIZE}")
        self.send(CSID_CONTROL, SET_CHUNK_SIZE, u32_payload(size))
        self.chunk_size_out = size  # applies to every chunk after the Set Chunk Size message

    def send_command(
        self, name: str, transaction_id: float, command_object: Any, *args: Any, stream_id: int = 0
    ) -> None:
        self.send(
            CSID_COMMAND, COMMAND_AMF0, encode_command(name, transaction_id, command_object, *args), stream_id
        )

    def count_received(self, size: int) -> None:
        """Count bytes off the wire and acknowledge once the peer's window has been crossed."""
        self.bytes_received += size
        window = self.peer_window_ack_size
        if window and self.bytes_received - self._acked_up_to >= window:
            self._acked_up_to = self.bytes_received
            self.send(CSID_CONTROL, ACK, u32_payload(self.bytes_received))

    def handle_control(self, message: RtmpMessage) -> bool:
        """Apply a protocol control or user control message; False for any other message type."""
        type_id = message.type_id
        if type_id in (SET_CHUNK_SIZE, ABORT):
            return True  # the chunk reader has applied it already
        if type_id == ACK:
            self.acked_bytes = parse_u32(message.payload, "acknowledgement")
        elif type_id == WINDOW_ACK_SIZE:
            self.peer_window_ack_size = parse_u32(message.payload, "window acknowledgement size")
        elif type_id == SET_PEER_BANDWIDTH:
            self.peer_bandwidth = parse_u32(message.payload, "set peer bandwidth")
            if len(message.payload) > 4:
                self.peer_bandwidth_limit_type = message.payload[4]
        elif type_id == USER_CONTROL:
            event_type, data = parse_user_control(message.payload)
            if event_type == PING_REQUEST:
                ping_time = parse_u32(data, "ping request")
                self.send(CSID_CONTROL, USER_CONTROL, user_control(PING_RESPONSE, ping_time))
        else:
            return False
        return True
