"""Input health from the packets of one contribution: bitrate, frame rate, keyframe interval, codecs.

Pure: fed packets and the current time, asked for a snapshot. The shell publishes snapshots each second.
"""

from __future__ import annotations

from collections import deque

from shared.messages import TIMEBASE, MediaPacket

WINDOW_S = 2.0


class InputStats:
    def __init__(self) -> None:
        self._bytes: deque[tuple[float, int]] = deque()
        self._video_frames: deque[float] = deque()
        self._last_key_dts: int | None = None
        self.keyframe_interval_s = 0.0
        self.video_codec = ""
        self.audio_codec = ""
        self.packets = 0
        self.total_bytes = 0

    def on_packet(self, packet: MediaPacket, now: float) -> None:
        self.packets += 1
        size = len(packet.data)
        self.total_bytes += size
        self._bytes.append((now, size))
        if packet.kind == "video":
            self.video_codec = packet.codec
            self._video_frames.append(now)
            if packet.keyframe:
                if self._last_key_dts is not None and packet.dts > self._last_key_dts:
                    self.keyframe_interval_s = round((packet.dts - self._last_key_dts) / TIMEBASE, 3)
                self._last_key_dts = packet.dts
        elif packet.kind == "audio":
            self.audio_codec = packet.codec
        self._trim(now)

    def _trim(self, now: float) -> None:
        horizon = now - WINDOW_S
        while self._bytes and self._bytes[0][0] < horizon:
            self._bytes.popleft()
        while self._video_frames and self._video_frames[0] < horizon:
            self._video_frames.popleft()

    def bitrate_bps(self, now: float) -> int:
        self._trim(now)
        return int(sum(size for _, size in self._bytes) * 8 / WINDOW_S)

    def fps(self, now: float) -> float:
        self._trim(now)
        return round(len(self._video_frames) / WINDOW_S, 2)
