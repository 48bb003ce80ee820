"""SRT destination URLs: parsing, refusals that never echo secrets, and sanitising."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.urls import SrtTarget, parse_srt_url, sanitize

PASS = "correct-horse-battery"

GOOD = [
    ("srt://partner.example:9000", SrtTarget("partner.example", 9000)),
    ("SRT://10.0.0.5:9000/?mode=caller&latency=200", SrtTarget("10.0.0.5", 9000, latency_ms=200)),
    (f"srt://h.example:1?passphrase={PASS}&pbkeylen=32", SrtTarget("h.example", 1, passphrase=PASS, pbkeylen=32)),
    ("srt://h.example:9000?streamid=#!::r=abc,m=publish", SrtTarget("h.example", 9000, streamid="#!::r=abc,m=publish")),
    ("srt://h.example:9000?streamid=%23!::r%3Dabc", SrtTarget("h.example", 9000, streamid="#!::r=abc")),
    ("srt://:9100?mode=listener", SrtTarget("0.0.0.0", 9100, "listener")),
    ("srt://127.0.0.1:9100?mode=listener&streamid=pull-key", SrtTarget("127.0.0.1", 9100, "listener", streamid="pull-key")),
    ("srt://[::1]:9000", SrtTarget("::1", 9000)),
]  # fmt: skip


@pytest.mark.parametrize(("url", "expected"), GOOD, ids=[g[0] for g in GOOD])
def test_parses(url: str, expected: SrtTarget) -> None:
    assert parse_srt_url(url) == expected


BAD = [
    ("rtmp://h/live/key", "scheme"),
    ("srt://h.example", "port"),
    ("srt://:9000", "host"),  # only a listener may leave the host out
    ("srt://h.example:0", "port"),
    ("srt://h.example:9000/live", "path"),
    ("srt://u:p@h.example:9000", "credentials"),
    ("srt://h.example:9000?mode=rendezvous", "mode"),
    ("srt://h.example:9000?passphrase=short", "10 to 79"),
    (f"srt://h.example:9000?passphrase={PASS}&pbkeylen=20", "pbkeylen"),
    ("srt://h.example:9000?pbkeylen=16", "needs a passphrase"),
    ("srt://h.example:9000?latency=5", "latency"),
    ("srt://h.example:9000?latency=1e3", "latency"),
    ("srt://h.example:9000?latency=100&latency=200", "twice"),
    ("srt://h.example:9000?transtype=file", "not supported"),
    ("srt://h.example:9000?streamid=" + "x" * 600, "512"),
    ("srt://h.example:9000?passphrase=with space", "whitespace"),
]


@pytest.mark.parametrize(("url", "message"), BAD, ids=[b[0][:40] for b in BAD])
def test_refuses(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_srt_url(url)


def test_errors_never_repeat_the_passphrase() -> None:
    secret = "SuperSecretPassphrase"
    for url in (f"srt://h:9?passphrase={secret}&pbkeylen=7", f"srt://h:9?passphrase={secret}&x{secret}=1"):
        with pytest.raises(ValueError) as exc:
            parse_srt_url(url)
        assert secret not in str(exc.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"srt://h:9000?mode=caller&passphrase={PASS}&streamid=#!::r=KEY,m=publish&latency=200",
         "srt://h:9000?mode=caller&passphrase=****&streamid=****&latency=200"),
        ("srt://u:pw@h:9000?passphrase=x", "srt://h:9000?passphrase=****"),
        ("srt://:9100?mode=listener", "srt://:9100?mode=listener"),
        ("srt://h:9000?unknown=secretvalue123", "srt://h:9000?unknown=****e123"),
    ],
)  # fmt: skip
def test_sanitize_hides_passphrase_and_stream_id(url: str, shown: str) -> None:
    assert sanitize(url) == shown


@given(st.text(max_size=200))
def test_fuzz_parse_and_sanitize(tail: str) -> None:
    url = "srt://" + tail
    try:
        target = parse_srt_url(url)
    except ValueError:
        pass
    else:
        assert 1 <= target.port <= 65535 and target.mode in ("caller", "listener")
    shown = sanitize(url)
    if "passphrase=" in url.partition("?")[2]:
        value = url.partition("passphrase=")[2].split("&", 1)[0]
        if len(value) > 4:
            assert value not in shown
