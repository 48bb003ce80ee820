"""The SSRF guard: every spelling of an internal address is read as the C library reads it and refused
unless allow-listed; names are resolved and every address they get is checked."""

from __future__ import annotations

import ipaddress

import pytest

from shared import netguard
from shared.netguard import Allowlist, DestinationRefused

# host as written in a URL -> the address the C resolver would connect to
SPELLINGS = [
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("[::1]", "::1"),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
    ("[::ffff:7f00:1]", "::ffff:7f00:1"),
    ("[0:0:0:0:0:ffff:127.0.0.1]", "::ffff:7f00:1"),
    ("169.254.169.254", "169.254.169.254"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("[fe80::1%eth0]", "fe80::1"),
    ("10.1.2.3", "10.1.2.3"),
    ("012.1.2.3", "10.1.2.3"),
    ("172.16.0.1", "172.16.0.1"),
    ("192.168.1.1", "192.168.1.1"),
    ("[fd00::1]", "fd00::1"),
    ("100.64.0.1", "100.64.0.1"),
    ("224.0.0.1", "224.0.0.1"),
    ("[ff02::1]", "ff02::1"),
    ("0.0.0.0", "0.0.0.0"),
    ("0", "0.0.0.0"),
    ("[::]", "::"),
    ("[2002:7f00:1::]", "2002:7f00:1::"),
    ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1"),
    ("[::127.0.0.1]", "::7f00:1"),
]


@pytest.mark.parametrize(("host", "address"), SPELLINGS)
def test_every_spelling_is_read_like_inet_aton_and_refused(host: str, address: str) -> None:
    ip = netguard.literal_address(host)
    assert ip == ipaddress.ip_address(address)
    assert netguard.forbidden_reason(ip) is not None
    with pytest.raises(DestinationRefused, match="outputs may only connect to public addresses"):
        netguard.check_address(ip, Allowlist(), host)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("2130706433", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.0.0.1", "private"),
        ("239.1.1.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
    ],
)
def test_the_reason_is_named(host: str, reason: str) -> None:
    ip = netguard.literal_address(host)
    assert ip is not None
    assert reason in (netguard.forbidden_reason(ip) or "")


@pytest.mark.parametrize("host", ["8.8.8.8", "1.1.1.1", "[2606:4700:4700::1111]", "134744072"])
def test_public_addresses_pass(host: str) -> None:
    ip = netguard.literal_address(host)
    assert ip is not None and netguard.forbidden_reason(ip) is None
    netguard.check_address(ip, Allowlist(), host)


@pytest.mark.parametrize(
    "host", ["example.com", "a.rtmp.youtube.com", "08.1.2.3", "1e3", "localhost", "x.0x7f"]
)
def test_names_are_not_literals(host: str) -> None:
    assert netguard.literal_address(host) is None


@pytest.mark.parametrize(
    ("allow", "host", "allowed"),
    [
        ("127.0.0.0/8", "2130706433", True),
        ("127.0.0.0/8", "0177.0.0.1", True),
        ("127.0.0.0/8", "[::ffff:127.0.0.1]", True),  # the mapped IPv4 address is what is checked
        ("127.0.0.0/8", "[::1]", False),
        ("127.0.0.0/8, ::1/128", "[::1]", True),
        ("10.0.0.0/8", "10.9.8.7", True),
        ("10.0.0.0/8", "10.0.0.0", True),
        ("10.0.0.0/8", "192.168.0.1", False),
        ("192.168.1.0/24 10.0.0.0/8", "192.168.1.20", True),
        ("", "127.0.0.1", False),
    ],
)
def test_the_allowlist_lets_ranges_through(allow: str, host: str, allowed: bool) -> None:
    ip = netguard.literal_address(host)
    assert ip is not None
    allowlist = Allowlist.parse(allow)
    if allowed:
        netguard.check_address(ip, allowlist, host)
    else:
        with pytest.raises(DestinationRefused):
            netguard.check_address(ip, allowlist, host)


def test_a_bad_allowlist_entry_is_named() -> None:
    with pytest.raises(ValueError, match="'nonsense' is not a CIDR"):
        Allowlist.parse("10.0.0.0/8,nonsense")


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("rtmp://host/app/key", ("rtmp", "host", 1935)),
        ("RTMPS://host:8443/app/key", ("rtmps", "host", 8443)),
        ("srt://10.0.0.1:9000?streamid=x", ("srt", "10.0.0.1", 9000)),
        ("rtmp://user:pw@[::1]:1936/app/key", ("rtmp", "::1", 1936)),
        ("rtmp://0x7f.1/app/key", ("rtmp", "0x7f.1", 1935)),
    ],
)
def test_target_of_a_url(url: str, target: tuple[str, str, int]) -> None:
    t = netguard.target_of(url)
    assert (t.scheme, t.host, t.port) == target


@pytest.mark.parametrize(
    "url",
    ["http://example.com/x", "file:///etc/passwd", "gopher://h/", "example.com/app/key", "rtmp:///app/k"],
)
def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(DestinationRefused):
        netguard.target_of(url)


def resolver_of(answers: dict[str, list[str]]) -> netguard.Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError(f"{host}: name does not resolve")
        return answers[host]

    return resolve


async def test_a_name_that_points_inside_is_refused_and_a_public_one_is_pinned() -> None:
    resolver = resolver_of(
        {
            "internal.example": ["10.0.0.5"],
            "rebind.example": ["93.184.216.34", "127.0.0.1"],  # one bad answer is enough
            "public.example": ["93.184.216.34", "2606:2800:220:1::"],
        }
    )
    with pytest.raises(DestinationRefused, match=r"host 'internal.example' \(10.0.0.5\) is private"):
        await netguard.resolve("internal.example", 1935, Allowlist(), resolver)
    with pytest.raises(DestinationRefused, match="loopback"):
        await netguard.resolve("rebind.example", 1935, Allowlist(), resolver)
    pinned = await netguard.resolve("public.example", 1935, Allowlist(), resolver)
    assert pinned == netguard.Pinned("public.example", "93.184.216.34", 1935)


async def test_localhost_through_the_system_resolver_is_loopback() -> None:
    with pytest.raises(DestinationRefused, match="loopback"):
        await netguard.resolve("localhost", 1935, Allowlist())
    pinned = await netguard.resolve("localhost", 1935, Allowlist.parse("127.0.0.0/8,::1/128"))
    assert ipaddress.ip_address(pinned.address).is_loopback


async def test_check_url_lets_an_unresolvable_name_through_unless_resolution_is_required() -> None:
    resolver = resolver_of({})
    assert await netguard.check_url("rtmp://nowhere.example/app/k", Allowlist(), resolver) is None
    with pytest.raises(OSError):
        await netguard.check_url(
            "rtmp://nowhere.example/app/k", Allowlist(), resolver, require_resolution=True
        )


async def test_literal_spellings_never_reach_the_resolver() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        raise AssertionError("a literal address must not be looked up")

    with pytest.raises(DestinationRefused):
        await netguard.check_url("rtmp://2130706433/app/key", Allowlist(), resolver)
    pinned = await netguard.check_url("rtmp://0x7f.1:1940/app/key", Allowlist.parse("127.0.0.0/8"), resolver)
    assert pinned == netguard.Pinned("0x7f.1", "127.0.0.1", 1940)
