"""SRT stream ids: the standard access-control form and the plain stream-key form. Pure.

Access control (SRT's ``AccessControl.md``): ``#!::`` then comma-separated ``key=value`` pairs, e.g.
``#!::r=STREAM_KEY,m=publish``. Standard keys: ``r`` resource, ``m`` mode (``request`` when absent,
``publish``, ``bidirectional``), ``t`` type (``stream`` when absent, ``file``, ``auth``), ``u`` user,
``h`` host, ``s`` session. Other keys are kept in ``extra`` and ignored. The nested ``#!:{...}`` form
is reserved by the standard and refused.

Plain form: anything that does not start with ``#!:`` is the stream key itself, for encoders that take
one string; it means publish.

``parse`` raises ``ValueError`` with a message that never repeats the id (it holds a stream key).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal

Mode = Literal["request", "publish", "bidirectional"]
Form = Literal["access-control", "plain"]

MAX_LENGTH: Final = 512  # libsrt's limit for SRTO_STREAMID
PREFIX: Final = "#!::"
_MODES: Final = ("request", "publish", "bidirectional")
_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_STANDARD: Final = {"r": "resource", "m": "mode", "t": "type", "u": "user", "h": "host", "s": "session"}


@dataclass(frozen=True)
class StreamId:
    resource: str = field(repr=False)  # the stream key: never logged
    mode: Mode = "publish"
    type: str = "stream"
    user: str = ""
    host: str = ""
    session: str = field(default="", repr=False)
    form: Form = "plain"
    extra: tuple[tuple[str, str], ...] = field(default=(), repr=False)


def parse(text: str) -> StreamId:
    if not text:
        raise ValueError("stream id is empty")
    if len(text) > MAX_LENGTH:
        raise ValueError(f"stream id is longer than {MAX_LENGTH} characters")
    if _CONTROL.search(text):
        raise ValueError("stream id contains control characters")
    if text.startswith(PREFIX):
        return _access_control(text[len(PREFIX) :])
    if text.startswith("#!:"):
        raise ValueError("stream id uses an unsupported access-control syntax (only '#!::key=value,...')")
    key = text.strip()
    if not key:
        raise ValueError("stream id is blank")
    return StreamId(resource=key)


def _access_control(body: str) -> StreamId:
    if not body:
        raise ValueError("access-control stream id has no key=value pairs")
    values: dict[str, str] = {}
    extra: list[tuple[str, str]] = []
    for number, item in enumerate(body.split(","), 1):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"access-control pair {number} has no '='")
        if not _KEY.match(key):
            raise ValueError(f"access-control pair {number} has an invalid key")
        if key in values or any(k == key for k, _ in extra):
            raise ValueError(f"access-control key {key!r} appears twice")
        if key in _STANDARD:
            values[key] = value
        else:
            extra.append((key, value))
    resource = values.get("r", "").strip()
    if not resource:
        raise ValueError("access-control stream id has no resource (r=)")
    mode = values.get("m", "request")
    if mode not in _MODES:
        raise ValueError(f"access-control mode must be one of {', '.join(_MODES)}")
    return StreamId(
        resource=resource,
        mode=mode,  # type: ignore[arg-type]
        type=values.get("t", "stream") or "stream",
        user=values.get("u", ""),
        host=values.get("h", ""),
        session=values.get("s", ""),
        form="access-control",
        extra=tuple(extra),
    )


def publish_streamid(stream_key: str) -> str:
    """The access-control stream id a publisher presents for ``stream_key``."""
    return f"{PREFIX}r={stream_key},m=publish"
