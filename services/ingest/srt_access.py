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
