"""Destination URL parsing and sanitising: table-driven, plus properties over generated input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.urls import MAX_URL_LENGTH, Destination, parse_destination_url, sanitize

GOOD = [
    (
        "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop",
        Destination("rtmp", "a.rtmp.youtube.com", 1935, "live2", "abcd-efgh-ijkl-mnop", "rtmp://a.rtmp.youtube.com:1935/live2"),
    ),
    (
        "rtmps://live-api-s.facebook.com:443/rtmp/FB-123-0-Ab?s_bl=1&a=xyz",
        Destination(
            "rtmps", "live-api-s.facebook.com", 443, "rtmp", "FB-123-0-Ab?s_bl=1&a=xyz",
            "rtmps://live-api-s.facebook.com:443/rtmp",
        ),
    ),
    ("rtmps://x.example/app/key", Destination("rtmps", "x.example", 443, "app", "key", "rtmps://x.example:443/app")),
    ("RTMP://Host.Example:1940/app/key", Destination("rtmp", "Host.Example", 1940, "app", "key", "rtmp://Host.Example:1940/app")),
    ("rtmp://127.0.0.1:19350/live/yt", Destination("rtmp", "127.0.0.1", 19350, "live", "yt", "rtmp://127.0.0.1:19350/live")),
    ("rtmp://[::1]:1935/live/k", Destination("rtmp", "::1", 1935, "live", "k", "rtmp://[::1]:1935/live")),
    ("rtmp://[2001:db8::2]/live/k", Destination("rtmp", "2001:db8::2", 1935, "live", "k", "rtmp://[2001:db8::2]:1935/live")),
    # three or more segments: the app is everything but the last one
    ("rtmp://h.example/app/inst/key", Destination("rtmp", "h.example", 1935, "app/inst", "key", "rtmp://h.example:1935/app/inst")),
    ("rtmp://localhost/live/k", Destination("rtmp", "localhost", 1935, "live", "k", "rtmp://localhost:1935/live")),
    ("rtmp://h.example./live/k", Destination("rtmp", "h.example.", 1935, "live", "k", "rtmp://h.example.:1935/live")),
]  # fmt: skip


@pytest.mark.parametrize(("url", "expected"), GOOD, ids=[g[0] for g in GOOD])
def test_parses_good_urls(url: str, expected: Destination) -> None:
    assert parse_destination_url(url) == expected


BAD = [
    ("", "empty"),
    ("http://example.com/live/key", "scheme"),
    ("srt://example.com:9000", "scheme"),
    ("rtmp:/example.com/live/key", "scheme"),
    ("example.com/live/key", "scheme"),
    ("rtmp://", "no host"),
    ("rtmp:///live/key", "no host"),
    ("rtmp://:1935/live/key", "no host"),
    ("rtmp://host:0/live/key", "port"),
    ("rtmp://host:65536/live/key", "port"),
    ("rtmp://host:abc/live/key", "port"),
    ("rtmp://host:/live/key", "port"),
    ("rtmp://host:-1/live/key", "port"),
    ("rtmp://host:1:2/live/key", "port"),
    ("rtmp://host", "app and a stream key"),
    ("rtmp://host/", "app and a stream key"),
    ("rtmp://host/live", "app and a stream key"),
    ("rtmp://host/live/", "no stream key"),
    ("rtmp://host//key", "app and a stream key"),
    ("rtmp://host/a//key", "empty segment"),
    ("rtmp://host/../key", "'..'"),
    ("rtmp://host?x=1", "app and a stream key"),
    ("rtmp://user:pass@host/live/key", "credentials"),
    ("rtmp://host/live/key#frag", "fragment"),
    ("rtmp://host/live/my key", "whitespace"),
    ("rtmp://host/live/key\n", "whitespace"),
    (" rtmp://host/live/key", "whitespace"),
    ("rtmp://host/live/key\x00", "control"),
    ("rtmp://host/live/key\x7f", "control"),
    ("rtmp://hóst/live/key", "ASCII"),
    ("rtmp://host/live/kéy", "ASCII"),
    ("rtmp://ho_st-/live/key", "host"),
    ("rtmp://-host/live/key", "host"),
    ("rtmp://a..b/live/key", "host"),
    ("rtmp://" + "a" * 64 + ".com/live/key", "host"),
    ("rtmp://999.1.1.1/live/key", "IPv4"),
    ("rtmp://[::1/live/key", "IPv6"),
    ("rtmp://[zz::1]/live/key", "IPv6"),
    ("rtmp://[::1]x/live/key", "host"),
    ("rtmp://host/live/" + "k" * MAX_URL_LENGTH, "too long"),
]


@pytest.mark.parametrize(("url", "message"), BAD, ids=[b[0][:60] for b in BAD])
def test_refuses_bad_urls_with_a_clear_message(url: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_destination_url(url)
    assert message.lower() in str(info.value).lower()


def test_error_messages_never_repeat_the_url() -> None:
    secret = "SuperSecretStreamKey123"
    for url in (f"rtmp://host:99999/live/{secret}", f"rtmp://u:{secret}@h/live/k", f"http://h/live/{secret}"):
        with pytest.raises(ValueError) as info:
            parse_destination_url(url)
        assert secret not in str(info.value)


def test_repr_of_a_destination_hides_the_stream_key() -> None:
    dest = parse_destination_url("rtmp://h.example/live/SuperSecretStreamKey123")
    assert "SuperSecret" not in repr(dest)


SANITIZED = [
    ("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-abcd", "rtmp://a.rtmp.youtube.com/live2/****abcd"),
    ("rtmps://live-api-s.facebook.com:443/rtmp/FB-1234567890?s_bl=1&a=Secr3t", "rtmps://live-api-s.facebook.com:443/rtmp/****cr3t"),
    ("rtmp://user:password@host.example/live/streamkey1234", "rtmp://host.example/live/****1234"),
    ("rtmp://host/live/short", "rtmp://host/live/****"),
    ("rtmp://host/app/inst/abcdefghijklmnop", "rtmp://host/app/inst/****mnop"),
    ("rtmp://host", "rtmp://host"),
    ("rtmp://host/", "rtmp://host/"),
    ("rtmp://host/app?user=bob&pass=hunter2hunter2", "rtmp://host/****ter2"),
    ("rtmp://host?key=abc", "rtmp://host****"),
    ("rtmp://us/er:pass@host/live/key", "rtmp://****"),
    ("just-a-secret-string", "****ring"),
    ("", ""),
]  # fmt: skip


@pytest.mark.parametrize(("url", "expected"), SANITIZED)
def test_sanitize(url: str, expected: str) -> None:
    assert sanitize(url) == expected


_KEY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789-_"
hosts = st.from_regex(r"\A[a-z]{1,12}(\.[a-z]{1,8}){0,2}\Z")
apps = st.lists(st.from_regex(r"\A[a-z]{1,10}\Z"), min_size=1, max_size=3).map("/".join)
keys = st.text(_KEY_ALPHABET, min_size=8, max_size=64)
ports = st.one_of(st.none(), st.integers(1, 65535))


@given(st.text(max_size=300))
def test_parse_never_raises_anything_but_value_error(text: str) -> None:
    try:
        parse_destination_url(text)
    except ValueError:
        pass


@given(st.sampled_from(["rtmp://", "rtmps://", "RTMP://", ""]), st.text(max_size=200))
def test_parse_never_raises_anything_but_value_error_near_valid(prefix: str, rest: str) -> None:
    try:
        parse_destination_url(prefix + rest)
    except ValueError:
        pass


@given(st.text(max_size=300))
def test_sanitize_never_raises(text: str) -> None:
    assert isinstance(sanitize(text), str)


@given(
    st.sampled_from(["rtmp", "rtmps"]),
    hosts,
    ports,
    apps,
    keys,
    st.one_of(st.none(), st.text(_KEY_ALPHABET + "=&", min_size=1, max_size=20)),
    st.one_of(st.none(), st.tuples(st.text(_KEY_ALPHABET, min_size=8, max_size=16), keys)),
)
def test_valid_urls_round_trip_and_sanitize_hides_their_secrets(
    scheme: str,
    host: str,
    port: int | None,
    app: str,
    key: str,
    query: str | None,
    userinfo: tuple[str, str] | None,
) -> None:
    authority = host if port is None else f"{host}:{port}"
    url = f"{scheme}://{authority}/{app}/{key}" + (f"?{query}" if query else "")
    dest = parse_destination_url(url)
    assert (dest.scheme, dest.host, dest.app) == (scheme, host, app)
    assert dest.port == (port or (1935 if scheme == "rtmp" else 443))
    assert dest.stream_name == key + (f"?{query}" if query else "")
    assert dest.tc_url == f"{scheme}://{host}:{dest.port}/{app}"
    clean = sanitize(url)
    assert key not in clean
    assert clean.startswith(f"{scheme}://{authority}/{app}/")
    if userinfo is not None:
        user, password = userinfo
        with_creds = f"{scheme}://{user}:{password}@{authority}/{app}/{key}"
        clean = sanitize(with_creds)
        assert password not in clean and user not in clean and key not in clean
