"""SRT stream ids: the access-control form and the plain key form, table-driven and fuzzed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.srt.streamid import MAX_LENGTH, StreamId, parse, publish_streamid

GOOD = [
    ("#!::r=KEY123,m=publish", StreamId("KEY123", "publish", form="access-control")),
    ("#!::m=publish,r=KEY123", StreamId("KEY123", "publish", form="access-control")),
    ("#!::r=KEY123", StreamId("KEY123", "request", form="access-control")),  # the standard's default
    ("#!::r=KEY123,m=request", StreamId("KEY123", "request", form="access-control")),
    ("#!::r=k,m=bidirectional,t=stream", StreamId("k", "bidirectional", form="access-control")),
    ("#!::u=alice,r=live/ev1,h=fanout.example,s=abc,m=publish,t=file",
     StreamId("live/ev1", "publish", "file", "alice", "fanout.example", "abc", "access-control")),
    ("#!::r=k,m=publish,xtra=1,zz=", StreamId("k", "publish", form="access-control", extra=(("xtra", "1"), ("zz", "")))),
    ("#!::r= k ,m=publish", StreamId("k", "publish", form="access-control")),
    ("#!::r=a=b,m=publish", StreamId("a=b", "publish", form="access-control")),  # the first '=' splits
    ("plainKey-abc_123", StreamId("plainKey-abc_123")),
    ("  spaced  ", StreamId("spaced")),
    ("live/stream?x=1", StreamId("live/stream?x=1")),
    ("#notaccesscontrol", StreamId("#notaccesscontrol")),
    ("#!", StreamId("#!")),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), GOOD, ids=[g[0] for g in GOOD])
def test_parses(text: str, expected: StreamId) -> None:
    assert parse(text) == expected


BAD = [
    ("", "empty"),
    ("   ", "blank"),
    ("#!::", "no key=value"),
    ("#!::m=publish", "no resource"),
    ("#!::r=,m=publish", "no resource"),
    ("#!::r=k,m=push", "mode"),
    ("#!::r=k,,m=publish", "no '='"),
    ("#!::r", "no '='"),
    ("#!::r=k,r=j", "twice"),
    ("#!::r=k,1x=2", "invalid key"),
    ("#!::r=k,=2", "invalid key"),
    ('#!:{"r":"k"}', "unsupported"),
    ("#!:r=k", "unsupported"),
    ("key\x00", "control"),
    ("#!::r=k\n,m=publish", "control"),
    ("k" * (MAX_LENGTH + 1), "longer"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[b[0][:30] or "empty" for b in BAD])
def test_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(text)


def test_the_key_never_shows_in_repr_or_errors() -> None:
    secret = "SECRETKEY-0123456789"
    assert secret not in repr(parse(publish_streamid(secret)))
    assert secret not in repr(parse(secret))
    for text in (f"#!::r={secret},m=push", f"#!::r={secret},r={secret}", f"#!:{secret}", secret + "\x01"):
        with pytest.raises(ValueError) as exc:
            parse(text)
        assert secret not in str(exc.value)


def test_publish_streamid_round_trip() -> None:
    parsed = parse(publish_streamid("abc-DEF_123"))
    assert (parsed.resource, parsed.mode, parsed.form) == ("abc-DEF_123", "publish", "access-control")


KEYS = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=",="), min_size=1, max_size=40
)


@given(KEYS.filter(lambda k: k.strip() == k), st.sampled_from(("request", "publish", "bidirectional")))
def test_any_access_control_id_round_trips(key: str, mode: str) -> None:
    parsed = parse(f"#!::m={mode},r={key}")
    assert (parsed.resource, parsed.mode) == (key, mode)


@given(st.text(max_size=600))
def test_fuzz_only_value_errors(text: str) -> None:
    try:
        parsed = parse(text)
    except ValueError:
        return
    assert parsed.resource and parsed.resource == parsed.resource.strip()
    assert parsed.mode in ("request", "publish", "bidirectional")
    assert len(text) <= MAX_LENGTH


@given(st.lists(st.tuples(st.text(max_size=6), st.text(max_size=10)), max_size=8))
def test_fuzz_access_control_pairs(pairs: list[tuple[str, str]]) -> None:
    text = "#!::" + ",".join(f"{k}={v}" for k, v in pairs)
    try:
        parsed = parse(text)
    except ValueError:
        return
    assert parsed.form == "access-control" and parsed.resource
