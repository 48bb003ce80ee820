"""The plain RTMP handshake (version 3, no digest), sans-IO.

C0/S0 is the version byte, C1/S1 is 1536 bytes (time, four zero bytes, random), C2/S2 echoes the
peer's C1/S1. Zero in bytes 4..8 of S1 and C1 tells ffmpeg, librtmp and nginx-rtmp that this is the
plain handshake, so none of them looks for the Flash digest.
"""

from __future__ import annotations

import os
from enum import Enum

from .errors import ProtocolError

VERSION = 3
PACKET_SIZE = 1536


def _packet(random: bytes | None) -> bytes:
    body = random if random is not None else os.urandom(PACKET_SIZE - 8)
    if len(body) != PACKET_SIZE - 8:
        raise ValueError(f"handshake random must be {PACKET_SIZE - 8} bytes, got {len(body)}")
    return bytes(8) + body  # time 0, then the zero "version" field that selects the plain handshake


def _check_version(version: int, who: str) -> None:
    if version != VERSION:
        raise ProtocolError(f"RTMP {who} version {version} is not supported (only {VERSION})")


class _Stage(Enum):
    IDLE = "idle"
    WAIT_PEER_PACKET = "wait_peer_packet"  # server: C0+C1; client: S0+S1
    WAIT_ECHO = "wait_echo"  # server: C2; client: S2
    DONE = "done"


class _Handshake:
    _peer_version_field = ""  # "C0" or "S0", for error messages

    def __init__(self, random: bytes | None) -> None:
        self._random = random
        self._stage = _Stage.IDLE
        self._buffer = bytearray()
        self._out = bytearray()
        self.leftover = b""  # chunk stream bytes that arrived with the end of the handshake

    @property
    def done(self) -> bool:
        return self._stage is _Stage.DONE

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        if self._stage is _Stage.DONE:
            raise RuntimeError("handshake already done: feed the chunk stream instead")
        self._buffer += data
        if self._stage is _Stage.WAIT_PEER_PACKET and self._buffer:
            _check_version(self._buffer[0], self._peer_version_field)  # fail fast on a non-RTMP peer
        if self._stage is _Stage.WAIT_PEER_PACKET and len(self._buffer) >= 1 + PACKET_SIZE:
            self._on_peer_packet(bytes(self._buffer[: 1 + PACKET_SIZE]))
            del self._buffer[: 1 + PACKET_SIZE]
            self._stage = _Stage.WAIT_ECHO
        if self._stage is _Stage.WAIT_ECHO and len(self._buffer) >= PACKET_SIZE:
            self.leftover = bytes(self._buffer[PACKET_SIZE:])  # the echo itself is not checked
            self._buffer.clear()
            self._stage = _Stage.DONE

    def _on_peer_packet(self, packet: bytes) -> None:
        raise NotImplementedError


class ServerHandshake(_Handshake):
    """Waits for C0+C1, answers S0+S1+S2 at once, then waits for C2."""

    _peer_version_field = "C0"

    def __init__(self, random: bytes | None = None) -> None:
        super().__init__(random)
        self._stage = _Stage.WAIT_PEER_PACKET

    def _on_peer_packet(self, packet: bytes) -> None:
        self._out.append(VERSION)
        self._out += _packet(self._random)
        self._out += packet[1:]  # S2 echoes C1


class ClientHandshake(_Handshake):
    """``initiate()`` queues C0+C1; on S0+S1 it queues C2, and it is done once S2 has arrived."""

    _peer_version_field = "S0"

    def __init__(self, random: bytes | None = None) -> None:
        super().__init__(random)

    def initiate(self) -> None:
        if self._stage is not _Stage.IDLE:
            raise RuntimeError(f"client handshake already started ({self._stage.value})")
        self._out.append(VERSION)
        self._out += _packet(self._random)
        self._stage = _Stage.WAIT_PEER_PACKET

    def receive_data(self, data: bytes) -> None:
        if self._stage is _Stage.IDLE:
            raise RuntimeError("client handshake received data before initiate()")
        super().receive_data(data)

    def _on_peer_packet(self, packet: bytes) -> None:
        self._out += packet[1:]  # C2 echoes S1
