"""ctypes declarations for the system libsrt (Debian ``libsrt1.5-openssl``): constants, structures, prototypes.

Only declarations live here; ``socket.py`` wraps them in Python calls that raise ``SrtError``. Every
layout is copied from libsrt 1.5's ``srt.h`` (fields in the header's order, the header's types), and a
unit test checks ``sizeof(CBytePerfMon)`` against the size of the 1.5.1 structure.

CDLL releases the GIL around every foreign call, so a blocking ``srt_epoll_uwait`` in a thread does
not stall the event loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Any, Final

LIBRARY_NAMES: Final = ("libsrt.so.1.5", "libsrt.so")

SRT_INVALID_SOCK: Final = -1
SRT_ERROR: Final = -1

# SRT_SOCKSTATUS
SRTS_INIT, SRTS_OPENED, SRTS_LISTENING, SRTS_CONNECTING, SRTS_CONNECTED = 1, 2, 3, 4, 5
SRTS_BROKEN, SRTS_CLOSING, SRTS_CLOSED, SRTS_NONEXIST = 6, 7, 8, 9

# SRT_SOCKOPT (the ones Fanout uses)
SRTO_MSS: Final = 0
SRTO_SNDSYN: Final = 1
SRTO_RCVSYN: Final = 2
SRTO_SNDBUF: Final = 5
SRTO_RCVBUF: Final = 6
SRTO_LINGER: Final = 7
SRTO_UDP_RCVBUF: Final = 9
SRTO_REUSEADDR: Final = 15
SRTO_STATE: Final = 17
SRTO_SNDDATA: Final = 19  # packets in the sender's buffer, not yet acknowledged
SRTO_LATENCY: Final = 23
SRTO_PASSPHRASE: Final = 26
SRTO_PBKEYLEN: Final = 27
SRTO_KMSTATE: Final = 28
SRTO_TLPKTDROP: Final = 31
SRTO_CONNTIMEO: Final = 36
SRTO_SNDKMSTATE: Final = 40
SRTO_RCVKMSTATE: Final = 41
SRTO_RCVLATENCY: Final = 43
SRTO_PEERLATENCY: Final = 44
SRTO_STREAMID: Final = 46
SRTO_PAYLOADSIZE: Final = 49
SRTO_TRANSTYPE: Final = 50
SRTO_ENFORCEDENCRYPTION: Final = 53
SRTO_PEERIDLETIMEO: Final = 55

SRTT_LIVE: Final = 0

# SRT_EPOLL_OPT
SRT_EPOLL_IN: Final = 0x1
SRT_EPOLL_OUT: Final = 0x4
SRT_EPOLL_ERR: Final = 0x8

# SRT_ERRNO (1000 * major + minor)
SRT_ECONNREJ: Final = 1002
SRT_ECONNLOST: Final = 2001
SRT_ENOCONN: Final = 2002
SRT_EINVSOCK: Final = 5004
SRT_EASYNCSND: Final = 6001
SRT_EASYNCRCV: Final = 6002
SRT_ETIMEOUT: Final = 6003

# SRT_REJECT_REASON (libsrt's own) and the access-control codes of access_control.h
SRT_REJ_BADSECRET: Final = 10
SRT_REJ_UNSECURE: Final = 11
SRT_REJX_BAD_REQUEST: Final = 1400
SRT_REJX_UNAUTHORIZED: Final = 1401
SRT_REJX_FORBIDDEN: Final = 1403
SRT_REJX_NOTFOUND: Final = 1404
SRT_REJX_BAD_MODE: Final = 1405
SRT_REJX_CONFLICT: Final = 1409
SRT_REJX_UNAVAILABLE: Final = 1503

LIVE_PAYLOAD_SIZE: Final = 1316  # 7 x 188: one SRT message carries seven MPEG-TS packets
STREAMID_MAX: Final = 512
PASSPHRASE_MIN, PASSPHRASE_MAX = 10, 79

SRTSOCKET = ctypes.c_int32


class CBytePerfMon(ctypes.Structure):
    """``struct CBytePerfMon`` of libsrt 1.5 (``SRT_TRACEBSTATS``), field for field."""

    _fields_ = [
        # global measurements
        ("msTimeStamp", ctypes.c_int64),
        ("pktSentTotal", ctypes.c_int64),
        ("pktRecvTotal", ctypes.c_int64),
        ("pktSndLossTotal", ctypes.c_int),
        ("pktRcvLossTotal", ctypes.c_int),
        ("pktRetransTotal", ctypes.c_int),
        ("pktSentACKTotal", ctypes.c_int),
        ("pktRecvACKTotal", ctypes.c_int),
        ("pktSentNAKTotal", ctypes.c_int),
        ("pktRecvNAKTotal", ctypes.c_int),
        ("usSndDurationTotal", ctypes.c_int64),
        ("pktSndDropTotal", ctypes.c_int),
        ("pktRcvDropTotal", ctypes.c_int),
        ("pktRcvUndecryptTotal", ctypes.c_int),
        ("byteSentTotal", ctypes.c_uint64),
        ("byteRecvTotal", ctypes.c_uint64),
        ("byteRcvLossTotal", ctypes.c_uint64),
        ("byteRetransTotal", ctypes.c_uint64),
        ("byteSndDropTotal", ctypes.c_uint64),
        ("byteRcvDropTotal", ctypes.c_uint64),
        ("byteRcvUndecryptTotal", ctypes.c_uint64),
        # local measurements (since the last clearing call)
        ("pktSent", ctypes.c_int64),
        ("pktRecv", ctypes.c_int64),
        ("pktSndLoss", ctypes.c_int),
        ("pktRcvLoss", ctypes.c_int),
        ("pktRetrans", ctypes.c_int),
        ("pktRcvRetrans", ctypes.c_int),
        ("pktSentACK", ctypes.c_int),
        ("pktRecvACK", ctypes.c_int),
        ("pktSentNAK", ctypes.c_int),
        ("pktRecvNAK", ctypes.c_int),
        ("mbpsSendRate", ctypes.c_double),
        ("mbpsRecvRate", ctypes.c_double),
        ("usSndDuration", ctypes.c_int64),
        ("pktReorderDistance", ctypes.c_int),
        ("pktRcvAvgBelatedTime", ctypes.c_double),
        ("pktRcvBelated", ctypes.c_int64),
        ("pktSndDrop", ctypes.c_int),
        ("pktRcvDrop", ctypes.c_int),
        ("pktRcvUndecrypt", ctypes.c_int),
        ("byteSent", ctypes.c_uint64),
        ("byteRecv", ctypes.c_uint64),
        ("byteRcvLoss", ctypes.c_uint64),
        ("byteRetrans", ctypes.c_uint64),
        ("byteSndDrop", ctypes.c_uint64),
        ("byteRcvDrop", ctypes.c_uint64),
        ("byteRcvUndecrypt", ctypes.c_uint64),
        # instant measurements
        ("usPktSndPeriod", ctypes.c_double),
        ("pktFlowWindow", ctypes.c_int),
        ("pktCongestionWindow", ctypes.c_int),
        ("pktFlightSize", ctypes.c_int),
        ("msRTT", ctypes.c_double),
        ("mbpsBandwidth", ctypes.c_double),
        ("byteAvailSndBuf", ctypes.c_int),
        ("byteAvailRcvBuf", ctypes.c_int),
        ("mbpsMaxBW", ctypes.c_double),
        ("byteMSS", ctypes.c_int),
        ("pktSndBuf", ctypes.c_int),
        ("byteSndBuf", ctypes.c_int),
        ("msSndBuf", ctypes.c_int),
        ("msSndTsbPdDelay", ctypes.c_int),
        ("pktRcvBuf", ctypes.c_int),
        ("byteRcvBuf", ctypes.c_int),
        ("msRcvBuf", ctypes.c_int),
        ("msRcvTsbPdDelay", ctypes.c_int),
        ("pktSndFilterExtraTotal", ctypes.c_int),
        ("pktRcvFilterExtraTotal", ctypes.c_int),
        ("pktRcvFilterSupplyTotal", ctypes.c_int),
        ("pktRcvFilterLossTotal", ctypes.c_int),
        ("pktSndFilterExtra", ctypes.c_int),
        ("pktRcvFilterExtra", ctypes.c_int),
        ("pktRcvFilterSupply", ctypes.c_int),
        ("pktRcvFilterLoss", ctypes.c_int),
        ("pktReorderTolerance", ctypes.c_int),
        # new in 1.5.0
        ("pktSentUniqueTotal", ctypes.c_int64),
        ("pktRecvUniqueTotal", ctypes.c_int64),
        ("byteSentUniqueTotal", ctypes.c_uint64),
        ("byteRecvUniqueTotal", ctypes.c_uint64),
        ("pktSentUnique", ctypes.c_int64),
        ("pktRecvUnique", ctypes.c_int64),
        ("byteSentUnique", ctypes.c_uint64),
        ("byteRecvUnique", ctypes.c_uint64),
    ]


# sizeof(struct CBytePerfMon) with libsrt 1.5.1's header on x86-64 / aarch64 (natural alignment)
PERFMON_SIZE_1_5: Final = 496


class SrtEpollEvent(ctypes.Structure):
    _fields_ = [("fd", SRTSOCKET), ("events", ctypes.c_int)]


class SockaddrIn(ctypes.Structure):
    _fields_ = [
        ("sin_family", ctypes.c_ushort),
        ("sin_port", ctypes.c_uint16),  # network byte order
        ("sin_addr", ctypes.c_uint8 * 4),
        ("sin_zero", ctypes.c_uint8 * 8),
    ]


class SockaddrIn6(ctypes.Structure):
    _fields_ = [
        ("sin6_family", ctypes.c_ushort),
        ("sin6_port", ctypes.c_uint16),
        ("sin6_flowinfo", ctypes.c_uint32),
        ("sin6_addr", ctypes.c_uint8 * 16),
        ("sin6_scope_id", ctypes.c_uint32),
    ]


class SockaddrStorage(ctypes.Structure):
    _fields_ = [("ss_family", ctypes.c_ushort), ("_pad", ctypes.c_uint8 * 126)]


# int (void* opaq, SRTSOCKET ns, int hsversion, const struct sockaddr* peeraddr, const char* streamid)
LISTEN_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, SRTSOCKET, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
)
# void (void* opaque, int level, const char* file, int line, const char* area, const char* message)
LOG_HANDLER = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p
)

_P = ctypes.POINTER
_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "srt_startup": (ctypes.c_int, []),
    "srt_cleanup": (ctypes.c_int, []),
    "srt_getversion": (ctypes.c_uint32, []),
    "srt_create_socket": (SRTSOCKET, []),
    "srt_bind": (ctypes.c_int, [SRTSOCKET, ctypes.c_void_p, ctypes.c_int]),
    "srt_listen": (ctypes.c_int, [SRTSOCKET, ctypes.c_int]),
    "srt_accept": (SRTSOCKET, [SRTSOCKET, ctypes.c_void_p, _P(ctypes.c_int)]),
    "srt_listen_callback": (ctypes.c_int, [SRTSOCKET, LISTEN_CALLBACK, ctypes.c_void_p]),
    "srt_connect": (ctypes.c_int, [SRTSOCKET, ctypes.c_void_p, ctypes.c_int]),
    "srt_close": (ctypes.c_int, [SRTSOCKET]),
    "srt_getpeername": (ctypes.c_int, [SRTSOCKET, ctypes.c_void_p, _P(ctypes.c_int)]),
    "srt_getsockname": (ctypes.c_int, [SRTSOCKET, ctypes.c_void_p, _P(ctypes.c_int)]),
    "srt_getsockflag": (ctypes.c_int, [SRTSOCKET, ctypes.c_int, ctypes.c_void_p, _P(ctypes.c_int)]),
    "srt_setsockflag": (ctypes.c_int, [SRTSOCKET, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]),
    "srt_sendmsg": (ctypes.c_int, [SRTSOCKET, ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]),
    "srt_recvmsg": (ctypes.c_int, [SRTSOCKET, ctypes.c_void_p, ctypes.c_int]),
    "srt_getlasterror_str": (ctypes.c_char_p, []),
    "srt_getlasterror": (ctypes.c_int, [_P(ctypes.c_int)]),
    "srt_clearlasterror": (None, []),
    "srt_strerror": (ctypes.c_char_p, [ctypes.c_int, ctypes.c_int]),
    "srt_bstats": (ctypes.c_int, [SRTSOCKET, _P(CBytePerfMon), ctypes.c_int]),
    "srt_bistats": (ctypes.c_int, [SRTSOCKET, _P(CBytePerfMon), ctypes.c_int, ctypes.c_int]),
    "srt_getsockstate": (ctypes.c_int, [SRTSOCKET]),
    "srt_epoll_create": (ctypes.c_int, []),
    "srt_epoll_add_usock": (ctypes.c_int, [ctypes.c_int, SRTSOCKET, _P(ctypes.c_int)]),
    "srt_epoll_update_usock": (ctypes.c_int, [ctypes.c_int, SRTSOCKET, _P(ctypes.c_int)]),
    "srt_epoll_remove_usock": (ctypes.c_int, [ctypes.c_int, SRTSOCKET]),
    "srt_epoll_uwait": (ctypes.c_int, [ctypes.c_int, _P(SrtEpollEvent), ctypes.c_int, ctypes.c_int64]),
    "srt_epoll_set": (ctypes.c_int32, [ctypes.c_int, ctypes.c_int32]),
    "srt_epoll_release": (ctypes.c_int, [ctypes.c_int]),
    "srt_getrejectreason": (ctypes.c_int, [SRTSOCKET]),
    "srt_setrejectreason": (ctypes.c_int, [SRTSOCKET, ctypes.c_int]),
    "srt_rejectreason_str": (ctypes.c_char_p, [ctypes.c_int]),
    "srt_setloglevel": (None, [ctypes.c_int]),
    "srt_setloghandler": (None, [ctypes.c_void_p, LOG_HANDLER]),
    "srt_setlogflags": (None, [ctypes.c_int]),
}

SRT_EPOLL_ENABLE_EMPTY: Final = 1

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None


def load() -> ctypes.CDLL:
    """The library, loaded, prototyped and started once per process (``srt_startup``)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        errors = []
        lib: ctypes.CDLL | None = None
        names = [*LIBRARY_NAMES, ctypes.util.find_library("srt") or ""]
        for name in filter(None, names):
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError as exc:
                errors.append(str(exc))
        if lib is None:
            raise OSError(
                "libsrt is not installed (Debian: apt-get install libsrt1.5-openssl): " + "; ".join(errors)
            )
        for fn_name, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(lib, fn_name)
            fn.restype = restype
            fn.argtypes = argtypes
        if lib.srt_startup() < 0:
            raise OSError(
                "srt_startup failed: " + (lib.srt_getlasterror_str() or b"").decode(errors="replace")
            )
        _lib = lib
        return lib
