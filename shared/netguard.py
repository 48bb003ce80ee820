"""The guard against server-side request forgery: where an output may connect.

A destination URL must use ``rtmp``, ``rtmps`` or ``srt``, and its host must not be (or resolve to) a
loopback, private, link-local (cloud metadata at 169.254.169.254 included), multicast, unspecified or
otherwise non-global address, in any spelling: a C resolver reads ``2130706433``, ``0177.0.0.1`` and
``0x7f.1`` as 127.0.0.1, so the host is read here the same way (``inet_aton``) before anything else.
An operator lets ranges through with ``FANOUT_DESTINATION_ALLOWLIST`` (comma-separated CIDRs).

The address checks are pure. ``resolve`` is the shell: it looks a name up and checks every address it
gets, so the caller connects to the checked address (pinned) and a DNS answer that changes between the
check and the connect (rebinding) cannot redirect it. Messages name the host, never the whole URL (it
may hold a stream key).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = {"rtmp": 1935, "rtmps": 443, "srt": 0}
ALLOWLIST_ENV = "FANOUT_DESTINATION_ALLOWLIST"

_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class DestinationRefused(ValueError):
    """The destination is not one an output may connect to; the message says why."""


# --- pure: reading hosts and classifying addresses ---


def _inet_aton_part(text: str) -> int:
    if text.lower().startswith("0x"):
        digits, base = text[2:], 16
    elif len(text) > 1 and text.startswith("0"):
        digits, base = text[1:], 8
    else:
        digits, base = text, 10
    if not digits and base == 16:
        return 0  # "0x" alone is 0 to inet_aton
    return int(digits, base)


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, read as the C library would; None for a DNS name.

    IPv4 in every ``inet_aton`` form (``a``, ``a.b``, ``a.b.c``, ``a.b.c.d``; each part decimal, octal
    with a leading 0, or hex with 0x), IPv6 with or without brackets and with a zone (``fe80::1%eth0``).
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        address, _, _zone = text.partition("%")
        try:
            return ipaddress.IPv6Address(address)
        except ValueError:
            return None
    text = text.removesuffix(".")
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    try:
        values = [_inet_aton_part(p) for p in parts]
    except ValueError:
        return None
    *head, last = values
    if any(not 0 <= v <= 0xFF for v in head) or last < 0 or last >= 1 << (8 * (5 - len(parts))):
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    number = number << (8 * (5 - len(parts))) | last
    return ipaddress.IPv4Address(number)


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64, Teredo), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    value = int(ip)
    if value >> 32 == 0 and value > 1:  # ::a.b.c.d, IPv4-compatible (deprecated, still routed by some)
        return ipaddress.IPv4Address(value)
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why an output must not connect to ``ip`` (unless allow-listed); None for a public address."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        reason = forbidden_reason(inner)
        return f"{reason} (IPv4 {inner} inside IPv6)" if reason else None
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata lives here)"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "shared address space (carrier-grade NAT)"
    if ip.is_private:
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


@dataclass(frozen=True)
class Allowlist:
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Allowlist:
        """Comma- or space-separated CIDRs (``10.0.0.0/8, ::1/128``); raises ValueError naming a bad one."""
        networks: list[Network] = []
        for item in (text or "").replace(",", " ").split():
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{ALLOWLIST_ENV}: {item!r} is not a CIDR (like 10.0.0.0/8)") from None
        return cls(tuple(networks))

    def allows(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        inner = embedded_ipv4(ip)
        if inner is not None:
            candidates.append(inner)
        return any(c in net for c in candidates for net in self.networks if c.version == net.version)


def check_address(ip: IPAddress, allowlist: Allowlist, host: str = "") -> None:
    reason = forbidden_reason(ip)
    if reason is None or allowlist.allows(ip):
        return
    named = f"host {host!r} ({ip})" if host and host.strip("[]") != str(ip) else f"address {ip}"
    raise DestinationRefused(
        f"destination {named} is {reason}: outputs may only connect to public addresses "
        f"(an operator can allow a range with {ALLOWLIST_ENV})"
    )


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written, IPv6 without brackets
    port: int


def target_of(url: str) -> Target:
    """Scheme, host and port of a destination URL; refuses any scheme but rtmp, rtmps and srt."""
    scheme, sep, rest = str(url).partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise DestinationRefused("URL scheme must be rtmp://, rtmps:// or srt://")
    cut = len(rest)
    for mark in "/?#":
        found = rest.find(mark)
        if found >= 0:
            cut = min(cut, found)
    authority = rest[:cut].rpartition("@")[2]
    port_text = ""
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise DestinationRefused("URL host has an unterminated IPv6 address")
        host, after = authority[1:end], authority[end + 1 :]
        port_text = after[1:] if after.startswith(":") else ""
    else:
        host, _, port_text = authority.partition(":")
    if not host:
        raise DestinationRefused("URL has no host")
    port = SCHEMES[scheme]
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise DestinationRefused("URL port must be a number from 1 to 65535")
        port = int(port_text)
    return Target(scheme, host, port)


# --- shell: name resolution ---

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port or None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class Pinned:
    """A checked destination: connect to ``address``; TLS verifies and SNI names ``host``."""

    host: str
    address: str
    port: int


async def resolve(
    host: str,
    port: int,
    allowlist: Allowlist,
    resolver: Resolver = system_resolver,
    timeout: float = 5.0,
) -> Pinned:
    """Check ``host`` and every address it resolves to; the first one, pinned. Raises DestinationRefused
    when any address is forbidden, and OSError when the name does not resolve."""
    literal = literal_address(host)
    if literal is not None:
        check_address(literal, allowlist, host)
        return Pinned(host, str(literal), port)
    async with asyncio.timeout(timeout):
        found = await resolver(host, port)
    addresses = _unique(ipaddress.ip_address(a.partition("%")[0]) for a in found)
    if not addresses:
        raise OSError(f"host {host!r} has no address")
    for ip in addresses:
        check_address(ip, allowlist, host)
    return Pinned(host, str(addresses[0]), port)


async def check_url(
    url: str, allowlist: Allowlist, resolver: Resolver = system_resolver, require_resolution: bool = False
) -> Pinned | None:
    """The create-time check of a destination URL. A name that does not resolve now passes unless
    ``require_resolution`` (the connect-time check resolves again and refuses then)."""
    target = target_of(url)
    try:
        return await resolve(target.host, target.port, allowlist, resolver)
    except (OSError, TimeoutError):
        if require_resolution:
            raise
        return None


def _unique(addresses: Iterable[IPAddress]) -> list[IPAddress]:
    out: list[IPAddress] = []
    for a in addresses:
        if a not in out:
            out.append(a)
    return out
