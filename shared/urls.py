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
