"""The event's program muxed once into MPEG-TS and cut into SRT messages shared by every SRT destination.

Created by the event's fan-out when its first SRT destination appears; from then on every program
packet is muxed exactly once (``TsMuxer``) and cut into 1316-byte messages (``Packetizer``), and the
same bytes objects go to each live SRT destination. Every keyframe starts a new message with PAT and
PMT, so a GOP cache of messages lets a destination that goes live mid-stream start at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from shared.messages import MediaPacket
from shared.mpegts.mux import Packetizer, TsMuxer

GOP_CACHE_MAX_BYTES = 32 * 1024 * 1024
IDLE_FLUSH_S = 0.1  # a message's tail waits for the next packet at most this long, then goes out short


class TsReceiver(Protocol):
    started: bool  # has had a keyframe: messages before it would not decode

    def send(self, message: bytes) -> None: ...
    def frame_sent(self) -> None: ...


class TsFeed:
    def __init__(self) -> None:
        self._muxer = TsMuxer()
        self._cutter = Packetizer()
        self._gop: list[bytes] = []
        self._gop_bytes = 0
        self.live: list[TsReceiver] = []
        self.frames = 0
        self.messages = 0
        self._last_packet = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def attach(self, dest: TsReceiver) -> None:
        """A destination went live: the current GOP at once, then live messages."""
        if dest in self.live:
            return
        self.live.append(dest)
        dest.started = bool(self._gop)
        for message in self._gop:
            dest.send(message)

    def detach(self, dest: TsReceiver) -> None:
        if dest in self.live:
            self.live.remove(dest)

    def pending(self) -> bytes:
        """The start of a message still waiting for more TS packets (a destination that leaves takes it,
        so the last frame it got is whole)."""
        return self._cutter.pending

    def on_packet(self, packet: MediaPacket) -> None:
        data = self._muxer.mux(packet)
        if not data:
            return
        self.frames += 1
        keyframe = packet.kind == "video" and packet.keyframe
        if keyframe:
            self._deliver(self._cutter.flush())  # the end of the previous GOP
            for dest in self.live:
                dest.started = True
        messages = self._cutter.push(data)
        self._cache(messages, keyframe)
        self._deliver(messages)
        for dest in self.live:
            if dest.started:
                dest.frame_sent()
        self._last_packet = time.monotonic()
        if self._cutter.pending and self._timer is None:
            self._arm()

    def _arm(self) -> None:
        try:
            self._timer = asyncio.get_running_loop().call_later(IDLE_FLUSH_S, self._flush_idle)
        except RuntimeError:  # no event loop (a test driving the feed directly): no timer
            self._timer = None

    def _flush_idle(self) -> None:
        """The program paused (input gone, switching): send the tail of the last frame now."""
        self._timer = None
        if time.monotonic() - self._last_packet < IDLE_FLUSH_S:
            if self._cutter.pending:
                self._arm()
            return
        messages = self._cutter.flush()
        self._cache(messages, keyframe=False)
        self._deliver(messages)

    def _cache(self, messages: list[bytes], keyframe: bool) -> None:
        if keyframe:
            self._gop, self._gop_bytes = [], 0
        elif not self._gop:
            return  # no keyframe yet: nothing a new destination could start on
        self._gop.extend(messages)
        self._gop_bytes += sum(len(m) for m in messages)
        if self._gop_bytes > GOP_CACHE_MAX_BYTES:
            self._gop, self._gop_bytes = [], 0  # an unusually long GOP: joiners wait for the next keyframe

    def _deliver(self, messages: list[bytes]) -> None:
        if not messages:
            return
        self.messages += len(messages)
        for dest in self.live:
            if dest.started:
                for message in messages:
                    dest.send(message)
