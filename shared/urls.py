"""Destination URLs: parse and validate RTMP(S) push targets, and mask their secrets.

``parse_destination_url`` is strict and raises ``ValueError`` with a message that never repeats the
URL (it may hold a stream key). ``sanitize`` never raises and is what every URL passes through before
it is logged or returned by an API: credentials are dropped and the stream key is masked down to at
most its last four characters.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}
_EXAMPLE = "rtmp://host/app/stream-key"
_HOST_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_MASK = "****"
_HINT_MIN_SECRET = 12  # shorter secrets are masked entirely: four characters of them would say too much


@dataclass(frozen=True)
class Destination:
    """An RTMP push target: ``connect`` to ``tc_url`` (app ``app``), then ``publish`` ``stream_name``."""

    scheme: str  # "rtmp" or "rtmps"
    host: str  # IPv6 literals without brackets
    port: int
    app: str
    stream_name: str = field(repr=False)  # the stream key, with the query string if the URL had one
    tc_url: str


def parse_destination_url(url: str) -> Destination:
    if not url:
        raise ValueError("URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"URL is too long (at most {MAX_URL_LENGTH} characters)")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError("URL contains whitespace or control characters")
    if not url.isascii():
        raise ValueError("URL must be ASCII (percent-encode other characters)")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise ValueError(f"URL scheme must be rtmp:// or rtmps:// (like {_EXAMPLE})")
    if "#" in rest:
        raise ValueError("URL must not contain a fragment ('#')")
    authority, _, path_and_query = _split_authority(rest)
    if "@" in authority:
        raise ValueError("URL must not contain credentials (user:password@); put them in the stream key")
    host, port = _host_port(authority, DEFAULT_PORTS[scheme])
    app, stream_name = _app_stream(path_and_query)
    host_in_url = f"[{host}]" if ":" in host else host
    return Destination(
        scheme=scheme,
        host=host,
        port=port,
        app=app,
        stream_name=stream_name,
        tc_url=f"{scheme}://{host_in_url}:{port}/{app}",
    )


def _split_authority(rest: str) -> tuple[str, str, str]:
    """``host:port`` and what follows it (``/path?query``), cut at the first ``/``, ``?`` or ``#``."""
    cut = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if found >= 0:
            cut = min(cut, found)
    return rest[:cut], rest[cut : cut + 1], rest[cut:]


def _host_port(authority: str, default_port: int) -> tuple[str, int]:
    if not authority:
        raise ValueError("URL has no host")
    port_text: str | None = None
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise ValueError("URL host has an unterminated IPv6 address")
        host, after = authority[1:end], authority[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("URL host is not a valid IPv6 address") from None
        if after:
            if not after.startswith(":"):
                raise ValueError("URL host is invalid")
            port_text = after[1:]
    else:
        host, colon, after = authority.partition(":")
        if colon:
            port_text = after
        _check_hostname(host)
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or len(port_text) > 5 or not 1 <= int(port_text) <= 65535:
        raise ValueError("URL port must be a number from 1 to 65535")
    return host, int(port_text)


def _check_hostname(host: str) -> None:
    if not host:
        raise ValueError("URL has no host")
    name = host.removesuffix(".")
    if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in name.split(".")):
        raise ValueError("URL host is not a valid host name or IP address")
    if all(label.isdigit() for label in name.split(".")):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise ValueError("URL host is not a valid IPv4 address") from None


def _app_stream(path_and_query: str) -> tuple[str, str]:
    path, qmark, query = path_and_query.partition("?")
    segments = path.split("/")[1:]  # path starts with "/" when present
    if len(segments) == 1 and segments[0] and "/" in query:
        # "app?args/key", as YouTube's backup ingest is written (live2?backup=1/KEY): the
        # arguments belong to the app (connect's tcUrl), the key follows the last '/'
        app_args, _, key = query.rpartition("/")
        if not key:
            raise ValueError(f"URL has no stream key after the app (like {_EXAMPLE})")
        return f"{segments[0]}?{app_args}", key
    if len(segments) < 2 or not segments[0]:
        raise ValueError(f"URL must name an app and a stream key (like {_EXAMPLE})")
    if not segments[-1]:
        raise ValueError(f"URL has no stream key after the app (like {_EXAMPLE})")
    if any(not s for s in segments[:-1]):
        raise ValueError("URL path has an empty segment ('//')")
    if any(s in (".", "..") for s in segments):
        raise ValueError("URL path must not contain '.' or '..' segments")
    return "/".join(segments[:-1]), segments[-1] + qmark + query


# --- SRT destinations: srt://host:port?mode=caller|listener&passphrase=...&streamid=...&latency=... ---

SRT_OPTIONS = ("mode", "passphrase", "pbkeylen", "streamid", "latency")
_SRT_EXAMPLE = "srt://host:port?mode=caller&streamid=...&passphrase=...&latency=120"
SrtMode = Literal["caller", "listener"]


@dataclass(frozen=True)
class SrtTarget:
    """An SRT destination: push to a partner's listener (caller), or listen for the partner to pull.

    For a listener, ``host`` is the local address to bind ("0.0.0.0" when the URL gives none). ``latency_ms``
    is in milliseconds, as srt-live-transmit takes it (ffmpeg's ``latency`` option is in microseconds).
    """

    host: str
    port: int
    mode: SrtMode = "caller"
    passphrase: str = field(default="", repr=False)
    pbkeylen: int = 0
    streamid: str = field(default="", repr=False)
    latency_ms: int = 120


def parse_srt_url(url: str) -> SrtTarget:
    if not url:
        raise ValueError("URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"URL is too long (at most {MAX_URL_LENGTH} characters)")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise ValueError("URL contains whitespace or control characters")
    if not url.isascii():
        raise ValueError("URL must be ASCII (percent-encode other characters)")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "srt":
        raise ValueError(f"URL scheme must be srt:// (like {_SRT_EXAMPLE})")
    authority, _, query = rest.partition("?")  # a stream id may hold '#' and '/': only '?' cuts
    if authority.endswith("/"):
        authority = authority[:-1]
    if "/" in authority:
        raise ValueError("SRT URL must not have a path: options go in the query")
    if "@" in authority:
        raise ValueError("URL must not contain credentials (user:password@); use passphrase=")
    options = _srt_query(query)
    mode = options.get("mode", "caller")
    if mode not in ("caller", "listener"):
        raise ValueError("SRT mode must be caller or listener")
    if authority.startswith(":") and mode == "listener":
        host, port = "0.0.0.0", _srt_port(authority[1:])
    else:
        host, port = _host_port(authority, 0)
        if port == 0:
            raise ValueError(f"SRT URL must give a port (like {_SRT_EXAMPLE})")
    passphrase = options.get("passphrase", "")
    if passphrase and not 10 <= len(passphrase) <= 79:
        raise ValueError("SRT passphrase must be 10 to 79 characters")
    pbkeylen = 0
    if "pbkeylen" in options:
        if options["pbkeylen"] not in ("16", "24", "32"):
            raise ValueError("SRT pbkeylen must be 16, 24 or 32")
        if not passphrase:
            raise ValueError("SRT pbkeylen needs a passphrase")
        pbkeylen = int(options["pbkeylen"])
    streamid = options.get("streamid", "")
    if len(streamid) > 512:
        raise ValueError("SRT streamid must be at most 512 characters")
    latency = 120
    if "latency" in options:
        text = options["latency"]
        if not text.isdigit() or not 20 <= int(text) <= 8000:
            raise ValueError("SRT latency must be 20 to 8000 (milliseconds)")
        latency = int(text)
    return SrtTarget(host, port, mode, passphrase, pbkeylen, streamid, latency)  # type: ignore[arg-type]


def _srt_port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise ValueError("URL port must be a number from 1 to 65535")
    return int(text)


def _srt_query(query: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        key = key.lower()
        if key not in SRT_OPTIONS:
            raise ValueError(f"SRT URL option {key[:20]!r} is not supported ({', '.join(SRT_OPTIONS)})")
        if key in options:
            raise ValueError(f"SRT URL option {key!r} is given twice")
        options[key] = unquote(value)
    return options


def sanitize_srt(url: str) -> str:
    """An srt:// URL safe to show: the passphrase hidden, the stream id masked, other options kept."""
    head, qmark, query = str(url).partition("?")
    scheme, _, authority = head.partition("://")
    head = f"{scheme}://{authority.rpartition('@')[2]}"
    if not qmark:
        return head
    shown = []
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        if key.lower() in ("passphrase", "streamid"):  # a stream id usually carries the partner's key
            value = _MASK if value else ""
        elif key.lower() not in SRT_OPTIONS:
            value = mask_secret(value)
        shown.append(f"{key}{eq}{value}")
    return f"{head}?{'&'.join(shown)}"


def mask_secret(secret: str) -> str:
    """``****`` and the last four characters of a long secret; only ``****`` for a short one."""
    if not secret:
        return ""
    if len(secret) >= _HINT_MIN_SECRET:
        return _MASK + secret[-4:]
    return _MASK


def sanitize(url: str) -> str:
    """A URL safe to log or show: userinfo removed, the last path segment and the query masked.

    Works on any text, valid URL or not, and never raises. Text that is not a URL is masked whole.
    """
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return mask_secret(text)
    if scheme.lower() == "srt":
        return sanitize_srt(text)
    authority, _, tail = _split_authority(rest)
    authority = authority.rpartition("@")[2]
    if not tail:
        return f"{scheme}://{authority}"
    cut = len(tail)
    for mark in "?#":
        found = tail.find(mark)
        if found >= 0:
            cut = min(cut, found)
    if "@" in tail[:cut]:
        # userinfo holding a '/' makes the host ambiguous: show nothing rather than part of a secret
        return f"{scheme}://{_MASK}"
    last_slash = tail.rfind("/", 0, cut)
    prefix, secret = tail[: last_slash + 1], tail[last_slash + 1 :]
    return f"{scheme}://{authority}{prefix}{mask_secret(secret)}"
