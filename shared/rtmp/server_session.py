"""The server side of an RTMP publishing connection, sans-IO.

``receive_data(bytes)`` in, ``data_to_send() -> bytes`` and ``next_event()`` out. The handshake,
connect, releaseStream/FCPublish, createStream, protocol control, pings and acknowledgements are
answered here; the shell decides only what needs policy: accept or reject a publish (``accept_publish``
/ ``reject_publish``) and reject a play (``reject_play``).

Behaviour choices:
- A second ``publish`` on one connection (even after an unpublish) is a ProtocolError.
- Media before any publish, or after a rejection or an unpublish, is ignored. Media that arrives while a
  publish awaits the shell's decision is emitted (after PublishRequested); the shell drops it if it
  rejects. Media is accepted on any message stream id: librtmp-based encoders may open a chunk stream
  with a fmt 1 header, which leaves the stream id at 0.
- Unknown commands get no reply and are not fatal.
- Events are queued during ``receive_data``, so a peer may withdraw its publish (FCUnpublish,
  deleteStream) before the shell has seen PublishRequested. ``accept_publish`` and ``reject_publish``
  are then no-ops, and Unpublished follows in the queue. Called with no publish pending at all, they
  raise RuntimeError.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .chunk import (
    AGGREGATE,
    AUDIO,
    COMMAND_AMF0,
    COMMAND_AMF3,
    CSID_CONTROL,
    DATA_AMF0,
    DATA_AMF3,
    SET_PEER_BANDWIDTH,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
    RtmpMessage,
)
from .control import (
    LIMIT_DYNAMIC,
    STREAM_BEGIN,
    Command,
    Endpoint,
    parse_command,
    set_peer_bandwidth,
    text,
    u32_payload,
    user_control,
)
from .errors import ProtocolError
from .handshake import ServerHandshake

log = logging.getLogger(__name__)

MAX_STREAMS = 64  # createStream calls per connection
_MEDIA_TYPES = frozenset((AUDIO, VIDEO, DATA_AMF0))
_FMS_VERSION = "FMS/3,0,1,123"


@dataclass(frozen=True, slots=True)
class Connected:
    app: str
    tc_url: str
    flash_ver: str


@dataclass(frozen=True, slots=True)
class PublishRequested:
    stream_name: str  # verbatim, query included ("key?x=y")
    publish_type: str  # "live", "record" or "append"
    stream_id: int


@dataclass(frozen=True, slots=True)
class MediaReceived:
    type_id: int  # chunk.AUDIO, chunk.VIDEO or chunk.DATA_AMF0
    timestamp: int  # milliseconds, extended past the 32-bit wraparound
    payload: bytes  # the FLV tag body


@dataclass(frozen=True, slots=True)
class Unpublished:
    stream_name: str


@dataclass(frozen=True, slots=True)
class PlayRequested:
    stream_name: str
    stream_id: int = 0


Event = Connected | PublishRequested | MediaReceived | Unpublished | PlayRequested


class ServerState(Enum):
    HANDSHAKE = "handshake"
    WAIT_CONNECT = "wait_connect"
    CONNECTED = "connected"
    PUBLISH_PENDING = "publish_pending"  # PublishRequested emitted, the shell has not decided
    PUBLISHING = "publishing"
    ENDED = "ended"  # rejected, play refused or unpublished: the shell closes after flushing


class ServerSession:
    def __init__(
        self,
        chunk_size_out: int = 4096,
        window_ack_size: int = 2_500_000,
        max_message_size: int = 8 * 1024 * 1024,
        *,
        handshake_random: bytes | None = None,
    ) -> None:
        self.chunk_size_out = chunk_size_out
        self.window_ack_size = window_ack_size
        self.state = ServerState.HANDSHAKE
        self._handshake = ServerHandshake(handshake_random)
        self._endpoint = Endpoint(max_message_size)
        self._events: deque[Event] = deque()
        self._timestamps = TimestampExtender()
        self._object_encoding = 0.0
        self._next_stream_id = 1
        self._publish_name = ""
        self._publish_stream_id = 0
        self._play_stream_id: int | None = None
        self._withdrawn = False  # the peer unpublished before the shell decided on its publish

    @property
    def bytes_received(self) -> int:
        return self._endpoint.bytes_received

    @property
    def publish_stream_id(self) -> int:
        return self._publish_stream_id

    def _set_state(self, new: ServerState) -> None:
        log.debug("rtmp.server.state", extra={"old": self.state.value, "new": new.value})
        self.state = new

    # --- I/O pump ---

    def receive_data(self, data: bytes) -> None:
        self._endpoint.count_received(len(data))
        if self.state is ServerState.HANDSHAKE:
            self._handshake.receive_data(data)
            self._endpoint.queue_raw(self._handshake.data_to_send())
            if not self._handshake.done:
                return
            self._set_state(ServerState.WAIT_CONNECT)
            data = self._handshake.leftover
        for message in self._endpoint.reader.feed(data):
            self._on_message(message)

    def data_to_send(self) -> bytes:
        return self._endpoint.data_to_send()

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # --- the shell's decisions ---

    def accept_publish(self) -> None:
        if self._withdrawn:
            return
        self._require(ServerState.PUBLISH_PENDING, "accept_publish")
        stream_id = self._publish_stream_id
        self._endpoint.send(CSID_CONTROL, USER_CONTROL, user_control(STREAM_BEGIN, stream_id))
        self._send_status(stream_id, "status", "NetStream.Publish.Start", "Publishing started.")
        self._set_state(ServerState.PUBLISHING)

    def reject_publish(
        self, code: str = "NetStream.Publish.BadName", description: str = "Publish refused."
    ) -> None:
        if self._withdrawn:
            return
        self._require(ServerState.PUBLISH_PENDING, "reject_publish")
        self._send_status(self._publish_stream_id, "error", code, description)
        self._set_state(ServerState.ENDED)

    def reject_play(self, description: str = "Play refused.", code: str = "NetStream.Play.Failed") -> None:
        if self._play_stream_id is None:
            raise RuntimeError("reject_play called without a PlayRequested")
        self._send_status(self._play_stream_id, "error", code, description)
        self._play_stream_id = None
        self._set_state(ServerState.ENDED)

    def _require(self, state: ServerState, action: str) -> None:
        if self.state is not state:
            raise RuntimeError(f"{action} called in state {self.state.value}, needs {state.value}")

    def _send_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        info = {"level": level, "code": code, "description": description}
        self._endpoint.send_command("onStatus", 0, None, info, stream_id=stream_id)

    # --- inbound messages ---

    def _on_message(self, message: RtmpMessage) -> None:
        if self._endpoint.handle_control(message):
            return
        type_id = message.type_id
        if type_id in _MEDIA_TYPES or type_id in (DATA_AMF3, AGGREGATE):
            self._on_media(message)
        elif type_id in (COMMAND_AMF0, COMMAND_AMF3):
            self._on_command(parse_command(message.payload, type_id), message.stream_id)

    def _on_media(self, message: RtmpMessage) -> None:
        if self.state not in (ServerState.PUBLISH_PENDING, ServerState.PUBLISHING):
            return
        if message.type_id == AGGREGATE:
            for type_id, timestamp, payload in split_aggregate(message.payload, message.timestamp):
                if type_id in _MEDIA_TYPES:
                    self._emit_media(type_id, timestamp, payload)
        elif message.type_id == DATA_AMF3:
            payload = message.payload[1:] if message.payload[:1] == b"\x00" else message.payload
            self._emit_media(DATA_AMF0, message.timestamp, payload)
        else:
            self._emit_media(message.type_id, message.timestamp, message.payload)

    def _emit_media(self, type_id: int, timestamp: int, payload: bytes) -> None:
        self._events.append(MediaReceived(type_id, self._timestamps.extend(timestamp), payload))

    def _on_command(self, command: Command, stream_id: int) -> None:
        name = command.name
        if name == "connect":
            self._on_connect(command)
        elif self.state in (ServerState.HANDSHAKE, ServerState.WAIT_CONNECT):
            raise ProtocolError(f"command {name!r} before connect")
        elif self.state is ServerState.ENDED:
            return
        elif name in ("releaseStream", "FCPublish"):
            self._reply(command, None)
        elif name == "createStream":
            self._on_create_stream(command)
        elif name == "publish":
            self._on_publish(command, stream_id)
        elif name == "play":
            self._play_stream_id = stream_id
            self._events.append(PlayRequested(text(_arg(command, 0)), stream_id))
        elif name == "FCUnpublish":
            self._end_publish()
        elif name == "deleteStream":
            if _arg(command, 0) == float(self._publish_stream_id):
                self._end_publish()
        elif name == "closeStream":
            if stream_id in (0, self._publish_stream_id):
                self._end_publish()
        else:
            log.debug("rtmp.server.unknown_command", extra={"command": name})

    def _reply(self, command: Command, *values: Any) -> None:
        if command.transaction_id:  # transaction 0 asks for no reply
            self._endpoint.send_command("_result", command.transaction_id, *values)

    def _on_connect(self, command: Command) -> None:
        if self.state is not ServerState.WAIT_CONNECT:
            raise ProtocolError(f"connect received in state {self.state.value}")
        props = command.command_object if isinstance(command.command_object, dict) else {}
        encoding = props.get("objectEncoding")
        self._object_encoding = encoding if isinstance(encoding, float) else 0.0
        endpoint = self._endpoint
        endpoint.send(CSID_CONTROL, WINDOW_ACK_SIZE, u32_payload(self.window_ack_size))
        endpoint.send(
            CSID_CONTROL, SET_PEER_BANDWIDTH, set_peer_bandwidth(self.window_ack_size, LIMIT_DYNAMIC)
        )
        endpoint.send_chunk_size(self.chunk_size_out)
        self._reply(
            command,
            {"fmsVer": _FMS_VERSION, "capabilities": 31.0, "mode": 1.0},
            {
                "level": "status",
                "code": "NetConnection.Connect.Success",
                "description": "Connection succeeded.",
                "objectEncoding": self._object_encoding,
            },
        )
        self._set_state(ServerState.CONNECTED)
        self._events.append(
            Connected(text(props.get("app")), text(props.get("tcUrl")), text(props.get("flashVer")))
        )

    def _on_create_stream(self, command: Command) -> None:
        if self._next_stream_id > MAX_STREAMS:
            raise ProtocolError(f"more than {MAX_STREAMS} createStream calls on one connection")
        stream_id = self._next_stream_id
        self._next_stream_id += 1
        self._reply(command, None, float(stream_id))

    def _on_publish(self, command: Command, stream_id: int) -> None:
        if self.state is not ServerState.CONNECTED:
            raise ProtocolError(f"publish received in state {self.state.value}: one publish per connection")
        name = _arg(command, 0)
        if not isinstance(name, str) or not name:
            raise ProtocolError("publish without a stream name")
        publish_type = text(_arg(command, 1)) or "live"
        self._publish_name = name
        self._publish_stream_id = stream_id
        self._set_state(ServerState.PUBLISH_PENDING)
        self._events.append(PublishRequested(name, publish_type, stream_id))

    def _end_publish(self) -> None:
        if self.state in (ServerState.PUBLISH_PENDING, ServerState.PUBLISHING):
            self._withdrawn = self.state is ServerState.PUBLISH_PENDING
            self._set_state(ServerState.ENDED)
            self._events.append(Unpublished(self._publish_name))


class TimestampExtender:
    """Extends 32-bit wire milliseconds into a monotonic-ish 64-bit count across wraparound (every
    ~49.7 days). One extender serves all media types, so a sparse type (data messages) is unwrapped
    against the dense ones; a step back of up to 2**31 ms is read as out of order, not as a wrap."""

    def __init__(self) -> None:
        self._last: int | None = None

    def extend(self, wire_ms: int) -> int:
        if self._last is None:
            self._last = wire_ms
            return wire_ms
        step = (wire_ms - self._last) & 0xFFFFFFFF
        if step >= 0x80000000:
            step -= 0x100000000
        self._last += step
        return self._last


def _arg(command: Command, index: int) -> Any:
    return command.args[index] if len(command.args) > index else None


def split_aggregate(payload: bytes, timestamp: int) -> list[tuple[int, int, bytes]]:
    """The (type_id, timestamp, body) messages inside an Aggregate message: FLV tags, each followed by a
    4-byte back pointer. Sub-message times keep their offsets from the first tag, rebased on the
    aggregate's own timestamp."""
    out: list[tuple[int, int, bytes]] = []
    first: int | None = None
    pos = 0
    end = len(payload)
    while pos < end:
        if end - pos < 11:
            raise ProtocolError(f"aggregate message has a {end - pos}-byte tag header at offset {pos}")
        type_id = payload[pos]
        size = int.from_bytes(payload[pos + 1 : pos + 4], "big")
        tag_time = int.from_bytes(payload[pos + 4 : pos + 7], "big") | payload[pos + 7] << 24
        pos += 11
        if pos + size > end:
            raise ProtocolError(f"aggregate tag of {size} bytes overruns the message at offset {pos}")
        if first is None:
            first = tag_time
        out.append((type_id, (timestamp + tag_time - first) & 0xFFFFFFFF, payload[pos : pos + size]))
        pos = min(pos + size + 4, end)  # some muxers leave out the last back pointer
    return out
