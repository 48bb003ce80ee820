"""Who may publish over SRT: a caller's stream id -> a route, or a refusal with its SRT reject code. Pure.

Runs inside libsrt's handshake (the listen hook), before any media is accepted: an unknown or stopped
stream id, a malformed one, anything but ``m=publish`` in the access-control form, or a type other than
``stream`` is refused with the access-control reject code a caller can show its operator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.srt import lib as L
from shared.srt import streamid

from .keys import Route

Lookup = Callable[[str, str], Route | None]  # KeyDirectory.lookup(stream_key, protocol)


@dataclass(frozen=True)
class Admission:
    route: Route | None
    reason: str = ""  # why refused: safe to log (never the stream id, which holds the key)
    reject_code: int = 0

    @property
    def accepted(self) -> bool:
        return self.route is not None


def admit(text: str, lookup: Lookup) -> Admission:
    try:
        sid = streamid.parse(text)
    except ValueError as exc:
        return Admission(None, f"malformed stream id: {exc}", L.SRT_REJX_BAD_REQUEST)
    if sid.mode != "publish":
        return Admission(None, f"mode {sid.mode!r}: this port only takes publishers", L.SRT_REJX_BAD_MODE)
    if sid.type != "stream":
        return Admission(None, f"type {sid.type!r}: only live streams are accepted", 1415)  # NOTSUP_MEDIA
    route = lookup(sid.resource, "srt")
    if route is None:
        return Admission(None, "unknown or stopped stream id", L.SRT_REJX_NOTFOUND)
    return Admission(route)


class Throttle:
    """At most one report per key per interval, saying how many were held back: a refused caller that
    retries a hundred times a second (srt-live-transmit does) costs one log line every few seconds."""

    def __init__(self, interval_s: float = 10.0, max_keys: int = 4096) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[object, tuple[float, int]] = {}

    def allow(self, key: object, now: float) -> int | None:
        """None to stay quiet; otherwise the number of reports held back since the last one."""
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return None
        if len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = (now, 0)
        return last[1] if last is not None else 0
