"""One SRT socket as a Python object over the ctypes binding: options, bind/listen/accept/connect, messages.

Calls raise ``SrtError`` (an ``OSError``) carrying libsrt's error code and text. Non-blocking receive
and send say "nothing now" by returning ``None`` / ``False`` instead of raising, because the poller
hits that case on every wake-up.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import socket as pysocket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import lib as L

log = logging.getLogger(__name__)


class SrtError(OSError):
    """A libsrt call failed. ``code`` is the SRT_ERRNO (e.g. 1002 connection rejected)."""

    def __init__(self, call: str, code: int, text: str, reject_reason: int = 0) -> None:
        super().__init__(code, f"{call}: {text}")
        self.call = call
        self.code = code
        self.text = text
        self.reject_reason = reject_reason


def _last_error(call: str, reject_reason: int = 0) -> SrtError:
    lib = L.load()
    code = lib.srt_getlasterror(None)
    text = (lib.srt_getlasterror_str() or b"").decode(errors="replace")
    lib.srt_clearlasterror()
    if reject_reason:
        reason = (lib.srt_rejectreason_str(reject_reason) or b"").decode(errors="replace")
        text = f"{text} (reject reason {reject_reason}: {reason})" if reason else text
    return SrtError(call, code, text, reject_reason)


def reject_reason_text(code: int) -> str:
    return (L.load().srt_rejectreason_str(code) or b"").decode(errors="replace")


def sockaddr(host: str, port: int) -> tuple[ctypes.Structure, int]:
    """A ``sockaddr_in``/``sockaddr_in6`` for a literal address or a name resolved now (blocking)."""
    try:
        ip = ipaddress.ip_address(host or "0.0.0.0")
    except ValueError:
        infos = pysocket.getaddrinfo(host, port, type=pysocket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve {host!r}") from None
        ip = ipaddress.ip_address(infos[0][4][0])
    if ip.version == 4:
        addr4 = L.SockaddrIn(pysocket.AF_INET, pysocket.htons(port))
        addr4.sin_addr[:] = list(ip.packed)
        return addr4, ctypes.sizeof(addr4)
    addr6 = L.SockaddrIn6(pysocket.AF_INET6, pysocket.htons(port))
    addr6.sin6_addr[:] = list(ip.packed)
    return addr6, ctypes.sizeof(addr6)


def peer_text(addr: int | None) -> str:
    """``host:port`` of a ``struct sockaddr*`` given by address (as the listen callback receives it)."""
    if not addr:
        return "?"
    family = ctypes.cast(addr, ctypes.POINTER(ctypes.c_ushort)).contents.value
    if family == pysocket.AF_INET:
        a4 = ctypes.cast(addr, ctypes.POINTER(L.SockaddrIn)).contents
        return f"{ipaddress.IPv4Address(bytes(a4.sin_addr))}:{pysocket.ntohs(a4.sin_port)}"
    if family == pysocket.AF_INET6:
        a6 = ctypes.cast(addr, ctypes.POINTER(L.SockaddrIn6)).contents
        return f"[{ipaddress.IPv6Address(bytes(a6.sin6_addr))}]:{pysocket.ntohs(a6.sin6_port)}"
    return "?"


@dataclass(frozen=True)
class Options:
    """What Fanout sets on a live-mode socket before it binds or connects."""

    latency_ms: int = 120
    passphrase: str = ""
    pbkeylen: int = 0  # 0: libsrt's default (16) / the sender's choice
    streamid: str = ""
    payload_size: int = L.LIVE_PAYLOAD_SIZE
    conn_timeout_ms: int = 3000
    peer_idle_timeout_ms: int = 5000

    def __repr__(self) -> str:  # the passphrase is a secret, the stream id may hold a key
        return f"Options(latency_ms={self.latency_ms}, encrypted={bool(self.passphrase)}, pbkeylen={self.pbkeylen})"


@dataclass(frozen=True)
class HookAnswer:
    """What a listen callback decides for one caller, during its handshake."""

    accept: bool
    reject_code: int = L.SRT_REJX_FORBIDDEN  # sent to the caller when refused
    passphrase: str = field(default="", repr=False)  # this connection's key: a wrong one fails the handshake
    latency_ms: int = 0  # 0: keep the listener's


# (new socket id, peer "host:port", stream id) -> answer; runs on a libsrt thread, must be quick
ListenHook = Callable[[int, str, str], HookAnswer]


class SrtSocket:
    def __init__(self, handle: int | None = None) -> None:
        self._lib = L.load()
        if handle is None:
            handle = self._lib.srt_create_socket()
            if handle == L.SRT_INVALID_SOCK:
                raise _last_error("srt_create_socket")
        self.handle = int(handle)
        self.closed = False

    def __repr__(self) -> str:
        return f"SrtSocket({self.handle})"

    # --- options ---

    def set_int(self, option: int, value: int) -> None:
        v = ctypes.c_int(value)
        if self._lib.srt_setsockflag(self.handle, option, ctypes.byref(v), ctypes.sizeof(v)) < 0:
            raise _last_error(f"srt_setsockflag({option})")

    def set_bool(self, option: int, value: bool) -> None:
        self.set_int(option, 1 if value else 0)

    def set_str(self, option: int, value: str) -> None:
        raw = value.encode()
        if self._lib.srt_setsockflag(self.handle, option, raw, len(raw)) < 0:
            raise _last_error(f"srt_setsockflag({option})")

    def get_int(self, option: int) -> int:
        v = ctypes.c_int(0)
        size = ctypes.c_int(ctypes.sizeof(v))
        if self._lib.srt_getsockflag(self.handle, option, ctypes.byref(v), ctypes.byref(size)) < 0:
            raise _last_error(f"srt_getsockflag({option})")
        return v.value

    def get_str(self, option: int, max_size: int = L.STREAMID_MAX + 1) -> str:
        buf = ctypes.create_string_buffer(max_size)
        size = ctypes.c_int(max_size)
        if self._lib.srt_getsockflag(self.handle, option, buf, ctypes.byref(size)) < 0:
            raise _last_error(f"srt_getsockflag({option})")
        return buf.raw[: size.value].decode(errors="replace")

    def configure(self, opts: Options, *, blocking: bool = False) -> None:
        """Live mode, latency, encryption and stream id: everything that must precede bind/connect."""
        self.set_int(L.SRTO_TRANSTYPE, L.SRTT_LIVE)
        self.set_int(L.SRTO_PAYLOADSIZE, opts.payload_size)
        self.set_int(L.SRTO_LATENCY, opts.latency_ms)
        self.set_int(L.SRTO_CONNTIMEO, opts.conn_timeout_ms)
        self.set_int(L.SRTO_PEERIDLETIMEO, opts.peer_idle_timeout_ms)
        if opts.passphrase:
            self.set_str(L.SRTO_PASSPHRASE, opts.passphrase)
        if opts.pbkeylen:
            self.set_int(L.SRTO_PBKEYLEN, opts.pbkeylen)
        if opts.streamid:
            self.set_str(L.SRTO_STREAMID, opts.streamid)
        self.set_blocking(blocking)

    def set_blocking(self, blocking: bool) -> None:
        self.set_bool(L.SRTO_RCVSYN, blocking)
        self.set_bool(L.SRTO_SNDSYN, blocking)

    # --- connection ---

    def bind(self, host: str, port: int) -> None:
        addr, size = sockaddr(host, port)
        if self._lib.srt_bind(self.handle, ctypes.byref(addr), size) < 0:
            raise _last_error("srt_bind")

    def set_listen_hook(self, hook: ListenHook) -> None:
        """Decide on every caller during its handshake, before anything is accepted (before ``listen``)."""
        lib = self._lib

        def trampoline(
            _opaque: Any, ns: int, hsversion: int, peer: int | None, streamid: bytes | None
        ) -> int:
            # called by libsrt's receiver thread: an exception must not unwind into C (ctypes would
            # print it and return 0, which accepts), so everything is caught and refuses
            try:
                if hsversion < 5:  # HSv4 callers cannot carry a stream id
                    lib.srt_setrejectreason(ns, L.SRT_REJX_BAD_REQUEST)
                    return -1
                answer = hook(ns, peer_text(peer), (streamid or b"").decode("utf-8", "replace"))
                if not answer.accept:
                    lib.srt_setrejectreason(ns, answer.reject_code)
                    return -1
                conn = SrtSocket(ns)
                if answer.passphrase:
                    conn.set_str(L.SRTO_PASSPHRASE, answer.passphrase)
                if answer.latency_ms:
                    conn.set_int(L.SRTO_LATENCY, answer.latency_ms)
                return 0
            except Exception:
                log.exception("srt.listen_hook_failed")
                lib.srt_setrejectreason(ns, 1500)  # SRT_REJX_ISE
                return -1

        self._hook = L.LISTEN_CALLBACK(trampoline)  # libsrt keeps only the pointer: keep the object alive
        if lib.srt_listen_callback(self.handle, self._hook, None) < 0:
            raise _last_error("srt_listen_callback")

    def listen(self, backlog: int = 64) -> None:
        if self._lib.srt_listen(self.handle, backlog) < 0:
            raise _last_error("srt_listen")

    def accept(self) -> tuple[SrtSocket, str] | None:
        """The next accepted connection and its peer, or None when none is waiting (non-blocking)."""
        storage = L.SockaddrStorage()
        size = ctypes.c_int(ctypes.sizeof(storage))
        handle = self._lib.srt_accept(self.handle, ctypes.byref(storage), ctypes.byref(size))
        if handle == L.SRT_INVALID_SOCK:
            err = _last_error("srt_accept")
            if err.code == L.SRT_EASYNCRCV:
                return None
            raise err
        return SrtSocket(handle), peer_text(ctypes.addressof(storage))

    def connect(self, host: str, port: int) -> None:
        """Connect (blocking when the socket is): a refusal raises ``SrtError`` with the reject reason."""
        addr, size = sockaddr(host, port)
        if self._lib.srt_connect(self.handle, ctypes.byref(addr), size) < 0:
            reason = self._lib.srt_getrejectreason(self.handle)
            raise _last_error("srt_connect", reason)

    @property
    def state(self) -> int:
        return int(self._lib.srt_getsockstate(self.handle))

    def local_port(self) -> int:
        storage = L.SockaddrStorage()
        size = ctypes.c_int(ctypes.sizeof(storage))
        if self._lib.srt_getsockname(self.handle, ctypes.byref(storage), ctypes.byref(size)) < 0:
            raise _last_error("srt_getsockname")
        return int(peer_text(ctypes.addressof(storage)).rsplit(":", 1)[1])

    def reject_reason(self) -> int:
        return int(self._lib.srt_getrejectreason(self.handle))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._lib.srt_close(self.handle)

    # --- data ---

    def recvmsg(self, buf: ctypes.Array[ctypes.c_char]) -> bytes | None:
        """One message into ``buf`` (reused by the caller), or None when nothing is ready."""
        n = self._lib.srt_recvmsg(self.handle, buf, len(buf))
        if n < 0:
            err = _last_error("srt_recvmsg")
            if err.code == L.SRT_EASYNCRCV:
                return None
            raise err
        return ctypes.string_at(buf, n)

    def sendmsg(self, data: bytes, ttl_ms: int = -1) -> bool:
        """Queue one message; False when the send buffer is full (non-blocking)."""
        n = self._lib.srt_sendmsg(self.handle, data, len(data), ttl_ms, 0)
        if n < 0:
            err = _last_error("srt_sendmsg")
            if err.code == L.SRT_EASYNCSND:
                return False
            raise err
        return True

    def stats(self, clear: bool = True) -> L.CBytePerfMon:
        """Totals since connect, interval figures since the last clearing call, and instant values."""
        perf = L.CBytePerfMon()
        if self._lib.srt_bistats(self.handle, ctypes.byref(perf), 1 if clear else 0, 1) < 0:
            raise _last_error("srt_bistats")
        return perf
