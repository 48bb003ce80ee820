"""libsrt's own log, bridged into Python: the one place that says why libsrt refused a handshake.

After the listen callback accepts a caller, libsrt may still reject it on its own, most often for
encryption (a wrong passphrase, or one side encrypted and the other not). The application learns
that only from libsrt's warning log, which names the refused socket: ``@ID:newConnection: connection
rejected due to: ... ERROR:BADSECRET``. ``parse_rejection`` reads such a line (pure); ``install``
forwards libsrt warnings to observers and to the ``srt.lib`` logger at DEBUG.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from . import lib as L

log = logging.getLogger("srt.lib")

LOG_ERR: Final = 3
LOG_WARNING: Final = 4
_NO_PREFIXES: Final = 0x1 | 0x2 | 0x4 | 0x8  # no time, thread name, severity or end of line

_REJECTED = re.compile(
    r"@(?P<socket>\d+):newConnection: connection rejected due to: .*?ERROR:(?P<code>[A-Z_]+)"
)
REASONS: Final = {
    "BADSECRET": "wrong passphrase",
    "UNSECURE": "encryption mismatch: a passphrase is required or unexpected",
    "BACKLOG": "listener backlog full",
    "VERSION": "peer SRT version too old",
    "CONGESTION": "incompatible congestion control",
    "MESSAGEAPI": "stream/message API mismatch",
    "FILTER": "incompatible packet filter",
    "ROGUE": "malformed handshake",
    "TIMEOUT": "handshake timed out",
}


@dataclass(frozen=True)
class Rejection:
    socket: int
    code: str  # libsrt's name: BADSECRET, UNSECURE, ...

    @property
    def reason(self) -> str:
        return REASONS.get(self.code, self.code.lower().replace("_", " "))


def parse_rejection(message: str) -> Rejection | None:
    match = _REJECTED.search(message)
    if match is None or match.group("code") == "PREDEFINED":  # our own refusal from the listen callback
        return None
    return Rejection(int(match.group("socket")), match.group("code"))


Observer = Callable[[Rejection], None]
_observers: list[Observer] = []
_lock = threading.Lock()
_handler: Any = None


def _on_log(_opaque: Any, level: int, _file: bytes, _line: int, area: bytes, message: bytes) -> None:
    # runs on libsrt's threads: never raise into C
    try:
        text = (message or b"").decode(errors="replace").strip()
        log.debug(
            "srt.lib",
            extra={"srt_level": level, "area": (area or b"").decode(errors="replace"), "msg_text": text},
        )
        rejection = parse_rejection(text)
        if rejection is not None:
            for observer in list(_observers):
                observer(rejection)
    except Exception:
        log.exception("srt.lib_observer_failed")


def install(observer: Observer | None = None) -> None:
    """Route libsrt's warnings here (once per process) and add ``observer`` for handshake rejections."""
    global _handler
    with _lock:
        if observer is not None:
            _observers.append(observer)
        if _handler is None:
            lib = L.load()
            _handler = L.LOG_HANDLER(_on_log)  # referenced for the life of the process
            lib.srt_setlogflags(_NO_PREFIXES)
            lib.srt_setloghandler(None, _handler)
            lib.srt_setloglevel(LOG_WARNING)


def remove(observer: Observer) -> None:
    with _lock:
        if observer in _observers:
            _observers.remove(observer)
