"""Sans-IO RTMP: AMF0, the plain handshake, the chunk stream, and server and client sessions.

No sockets, tasks or clocks here: sessions take ``receive_data(bytes)`` and give ``data_to_send()``
and ``next_event()``. Every malformed input raises ``ProtocolError`` (a ``ValueError``).
"""

from __future__ import annotations

from . import amf0, chunk, control
from .client_session import (
    Acknowledged,
    ClientEvent,
    ClientSession,
    ClientState,
    Published,
    Rejected,
    StatusReceived,
)
from .errors import ProtocolError
from .handshake import ClientHandshake, ServerHandshake
from .server_session import (
    Connected,
    Event,
    MediaReceived,
    PlayRequested,
    PublishRequested,
    ServerSession,
    ServerState,
    Unpublished,
)

__all__ = [
    "Acknowledged",
    "ClientEvent",
    "ClientHandshake",
    "ClientSession",
    "ClientState",
    "Connected",
    "Event",
    "MediaReceived",
    "PlayRequested",
    "ProtocolError",
    "PublishRequested",
    "Published",
    "Rejected",
    "ServerHandshake",
    "ServerSession",
    "ServerState",
    "StatusReceived",
    "Unpublished",
    "amf0",
    "chunk",
    "control",
]
