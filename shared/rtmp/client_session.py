"""The client side of an RTMP publishing connection (our output to a destination), sans-IO.

Flow: ``initiate()`` queues C0+C1. After the handshake: Set Chunk Size, ``connect``; on its
``_result``: Window Ack Size (unless 0), ``releaseStream``, ``FCPublish``, ``createStream``; on that
``_result``: ``publish(name, "live")`` on the new stream; on onStatus NetStream.Publish.Start: the
``Published`` event. Replies are matched to requests by transaction id, so servers may interleave
onBWDone, onFCPublish and results in any order.

``Rejected`` is emitted for an ``_error`` to connect, createStream or publish, or an error-level
onStatus before Published. An error-level onStatus after Published comes as ``StatusReceived``.
``_error`` replies to releaseStream/FCPublish are ignored (some servers answer so when there is
nothing to release).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .chunk import (
    ACK,
    AUDIO,
    COMMAND_AMF0,
    COMMAND_AMF3,
    CSID_AUDIO,
    CSID_CONTROL,
    CSID_DATA,
    CSID_VIDEO,
    DATA_AMF0,
    VIDEO,
    WINDOW_ACK_SIZE,
    RtmpMessage,
    encode_message,
)
from .control import Command, Endpoint, info_object, parse_command, text, u32_payload
from .errors import ProtocolError
from .handshake import ClientHandshake

log = logging.getLogger(__name__)

MEDIA_CSIDS = {AUDIO: CSID_AUDIO, VIDEO: CSID_VIDEO, DATA_AMF0: CSID_DATA}


@dataclass(frozen=True, slots=True)
class Published:
    pass


@dataclass(frozen=True, slots=True)
class Rejected:
    code: str
    description: str


@dataclass(frozen=True, slots=True)
class Acknowledged:
    sequence: int  # the server's count of bytes received from us, modulo 2**32


@dataclass(frozen=True, slots=True)
class StatusReceived:
    level: str
    code: str
    description: str


ClientEvent = Published | Rejected | Acknowledged | StatusReceived


class ClientState(Enum):
    IDLE = "idle"
    HANDSHAKE = "handshake"
    CONNECTING = "connecting"  # connect sent
    CREATING_STREAM = "creating_stream"  # releaseStream, FCPublish, createStream sent
    PUBLISH_SENT = "publish_sent"
    PUBLISHED = "published"
    REJECTED = "rejected"
    UNPUBLISHED = "unpublished"


_FATAL_ERRORS = frozenset(("connect", "createStream", "publish"))


class ClientSession:
    def __init__(
        self,
        app: str,
        stream_name: str,
        tc_url: str,
        chunk_size_out: int = 4096,
        flash_ver: str = "FMLE/3.0 (compatible; Fanout)",
        *,
        window_ack_size: int = 2_500_000,
        max_message_size: int = 8 * 1024 * 1024,
        handshake_random: bytes | None = None,
    ) -> None:
        self.app = app
        self.stream_name = stream_name
        self.tc_url = tc_url
        self.flash_ver = flash_ver
        self.window_ack_size = window_ack_size  # asks the server to acknowledge what we send
        self.state = ClientState.IDLE
        self._chunk_size_out = chunk_size_out
        self._handshake = ClientHandshake(handshake_random)
        self._endpoint = Endpoint(max_message_size)
        self._events: deque[ClientEvent] = deque()
        self._transactions: dict[float, str] = {}
        self._next_transaction = 1
        self._stream_id = 0

    # --- properties the shell reads ---

    @property
    def stream_id(self) -> int:
        """The publish stream id from createStream; 0 until then."""
        return self._stream_id

    @property
    def chunk_size_out(self) -> int:
        """The chunk size every message from us uses once connected (Set Chunk Size precedes connect)."""
        return self._chunk_size_out

    @property
    def bytes_received(self) -> int:
        return self._endpoint.bytes_received

    @property
    def acked_bytes(self) -> int:
        return self._endpoint.acked_bytes

    @property
    def peer_window_ack_size(self) -> int:
        return self._endpoint.peer_window_ack_size

    @property
    def peer_bandwidth(self) -> int:
        """The server's Set Peer Bandwidth: how much we may send unacknowledged (0 if never sent)."""
        return self._endpoint.peer_bandwidth

    def _set_state(self, new: ClientState) -> None:
        log.debug("rtmp.client.state", extra={"old": self.state.value, "new": new.value})
        self.state = new

    # --- I/O pump ---

    def initiate(self) -> None:
        if self.state is not ClientState.IDLE:
            raise RuntimeError(f"initiate called in state {self.state.value}")
        self._handshake.initiate()
        self._endpoint.queue_raw(self._handshake.data_to_send())
        self._set_state(ClientState.HANDSHAKE)

    def receive_data(self, data: bytes) -> None:
        if self.state is ClientState.IDLE:
            raise RuntimeError("receive_data called before initiate")
        self._endpoint.count_received(len(data))
        if self.state is ClientState.HANDSHAKE:
            self._handshake.receive_data(data)
            self._endpoint.queue_raw(self._handshake.data_to_send())
            if not self._handshake.done:
                return
            self._send_connect()
            data = self._handshake.leftover
        for message in self._endpoint.reader.feed(data):
            self._on_message(message)

    def data_to_send(self) -> bytes:
        return self._endpoint.data_to_send()

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    # --- the shell's actions ---

    def encode_media(self, type_id: int, timestamp: int, payload: bytes) -> bytes:
        """One whole media message on the publish stream, for sends off the hot path (metadata,
        sequence headers). ``timestamp`` is in milliseconds; it is sent modulo 2**32."""
        csid = MEDIA_CSIDS.get(type_id)
        if csid is None:
            raise ValueError(f"message type {type_id} is not audio, video or AMF0 data")
        if not self._stream_id:
            raise RuntimeError(f"encode_media called in state {self.state.value}, before createStream")
        return encode_message(csid, type_id, timestamp, self._stream_id, payload, self._chunk_size_out)

    def set_window_ack_size(self, size: int) -> None:
        """Ask the server to acknowledge every ``size`` bytes from now on (e.g. once the stream's
        bitrate is known). Queued at once when connected, else sent with connect's result."""
        if not 1 <= size <= 0xFFFFFFFF:
            raise ValueError(f"window acknowledgement size {size} is outside 1..2**32-1")
        self.window_ack_size = size
        if self.state in (ClientState.CREATING_STREAM, ClientState.PUBLISH_SENT, ClientState.PUBLISHED):
            self._endpoint.send(CSID_CONTROL, WINDOW_ACK_SIZE, u32_payload(size))

    def unpublish(self) -> None:
        """Queue FCUnpublish and deleteStream so the destination ends the stream.

        A no-op when there is nothing to end yet (before connect's result) or already ended, so it is
        safe in teardown paths.
        """
        if self.state not in (ClientState.CREATING_STREAM, ClientState.PUBLISH_SENT, ClientState.PUBLISHED):
            return
        self._call("FCUnpublish", self.stream_name)
        if self._stream_id:
            self._call("deleteStream", float(self._stream_id))
        self._set_state(ClientState.UNPUBLISHED)

    # --- outbound commands ---

    def _call(self, name: str, *args: Any, stream_id: int = 0) -> None:
        transaction = float(self._next_transaction)
        self._next_transaction += 1
        self._transactions[transaction] = name
        self._endpoint.send_command(name, transaction, None, *args, stream_id=stream_id)

    def _send_connect(self) -> None:
        self._endpoint.send_chunk_size(self._chunk_size_out)
        transaction = float(self._next_transaction)
        self._next_transaction += 1
        self._transactions[transaction] = "connect"
        self._endpoint.send_command(
            "connect",
            transaction,
            {
                "app": self.app,
                "type": "nonprivate",
                "flashVer": self.flash_ver,
                "tcUrl": self.tc_url,
                "fpad": False,
                "capabilities": 15.0,
                "audioCodecs": 3191.0,
                "videoCodecs": 252.0,
                "videoFunction": 1.0,
            },
        )
        self._set_state(ClientState.CONNECTING)

    # --- inbound messages ---

    def _on_message(self, message: RtmpMessage) -> None:
        if self._endpoint.handle_control(message):
            if message.type_id == ACK:
                self._events.append(Acknowledged(self._endpoint.acked_bytes))
            return
        if message.type_id in (COMMAND_AMF0, COMMAND_AMF3):
            self._on_command(parse_command(message.payload, message.type_id))

    def _on_command(self, command: Command) -> None:
        if command.name in ("_result", "_error"):
            method = self._transactions.pop(command.transaction_id, None)
            if method is None:
                log.debug("rtmp.client.unmatched_result", extra={"transaction": command.transaction_id})
            elif command.name == "_error":
                self._on_error(method, command)
            elif method == "connect" and self.state is ClientState.CONNECTING:
                self._on_connected()
            elif method == "createStream" and self.state is ClientState.CREATING_STREAM:
                self._on_stream_created(command)
        elif command.name == "onStatus":
            self._on_status(command)

    def _on_connected(self) -> None:
        if self.window_ack_size:
            self._endpoint.send(CSID_CONTROL, WINDOW_ACK_SIZE, u32_payload(self.window_ack_size))
        self._call("releaseStream", self.stream_name)
        self._call("FCPublish", self.stream_name)
        self._call("createStream")
        self._set_state(ClientState.CREATING_STREAM)

    def _on_stream_created(self, command: Command) -> None:
        stream_id = command.args[0] if command.args else None
        if not isinstance(stream_id, float) or not 0 < stream_id <= 0xFFFFFFFF:
            raise ProtocolError(f"createStream result carries no valid stream id: {stream_id!r}")
        self._stream_id = int(stream_id)
        self._call("publish", self.stream_name, "live", stream_id=self._stream_id)
        self._set_state(ClientState.PUBLISH_SENT)

    def _on_error(self, method: str, command: Command) -> None:
        info = info_object(command)
        if method in _FATAL_ERRORS and self.state not in (ClientState.REJECTED, ClientState.UNPUBLISHED):
            code = text(info.get("code")) or f"{method}._error"
            self._reject(code, text(info.get("description")))
        else:
            log.debug("rtmp.client.ignored_error", extra={"method": method, "code": text(info.get("code"))})

    def _on_status(self, command: Command) -> None:
        info = info_object(command)
        level, code, description = (
            text(info.get("level")),
            text(info.get("code")),
            text(info.get("description")),
        )
        if code == "NetStream.Publish.Start" and self.state is ClientState.PUBLISH_SENT:
            self._set_state(ClientState.PUBLISHED)
            self._events.append(Published())
        elif level == "error" and self.state in (
            ClientState.CONNECTING,
            ClientState.CREATING_STREAM,
            ClientState.PUBLISH_SENT,
        ):
            self._reject(code, description)
        else:
            self._events.append(StatusReceived(level, code, description))

    def _reject(self, code: str, description: str) -> None:
        self._set_state(ClientState.REJECTED)
        self._events.append(Rejected(code, description))
