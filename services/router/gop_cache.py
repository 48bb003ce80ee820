"""The latest GOP of one input, with the times its packets arrived: what keeps a backup warm.

An unplanned switch starts the new input from its most recent keyframe instead of waiting up to a GOP
for the next one. The packets are replayed with the times they arrived, so the program timeline can catch
them up to the wall clock (see ``ProgramTimeline.replay``).
"""

from __future__ import annotations

from shared.messages import MediaPacket

MAX_BYTES = 16 * 1024 * 1024


class GopCache:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: list[tuple[MediaPacket, float]] = []
        self._bytes = 0

    def add(self, packet: MediaPacket, arrived: float) -> None:
        if packet.kind == "video" and packet.keyframe and packet.config:
            self._items = [(packet, arrived)]
            self._bytes = len(packet.data)
        elif self._items and packet.kind != "data":
            self._items.append((packet, arrived))
            self._bytes += len(packet.data)
            if self._bytes > self.max_bytes:
                self.clear()  # an unusually long GOP: a switch waits for the next keyframe

    def clear(self) -> None:
        self._items = []
        self._bytes = 0

    def keyframe_age(self, now: float) -> float | None:
        return now - self._items[0][1] if self._items else None

    def replay(self, now: float, max_age: float) -> list[tuple[MediaPacket, float]]:
        """The GOP from its keyframe, if that keyframe is at most ``max_age`` seconds old."""
        age = self.keyframe_age(now)
        if age is None or age > max_age:
            return []
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)
