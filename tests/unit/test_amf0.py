"""AMF0: golden bytes written from the spec, round trips, and precise rejection of malformed input."""

from __future__ import annotations

import math

import pytest

from shared.rtmp import amf0
from shared.rtmp.amf0 import UNDEFINED, Amf0Date, EcmaArray
from shared.rtmp.errors import ProtocolError


def h(text: str) -> bytes:
    """Hex with spaces, and "quoted" ASCII for readability."""
    out = bytearray()
    for part in text.split():
        out += part.strip('"').encode() if part.startswith('"') else bytes.fromhex(part)
    return bytes(out)


GOLDEN = [
    ("number", h("00 3ff0000000000000"), [1.0]),
    ("negative number", h("00 c059000000000000"), [-100.0]),
    ("true", h("01 01"), [True]),
    ("false", h("01 00"), [False]),
    ("string", h('02 0004 "live"'), ["live"]),
    ("empty string", h("02 0000"), [""]),
    ("utf-8 string", h("02 0003 e282ac"), ["\u20ac"]),
    ("null and undefined", h("05 06"), [None, UNDEFINED]),
    ("date", h("0b 4272c148d0130000 0000"), [Amf0Date(1288834974000.0, 0)]),
    ("empty object", h("03 000009"), [{}]),
    ("strict array", h('0a 00000003 00 4000000000000000 02 0001 "x" 05'), [[2.0, "x", None]]),
    (
        "connect command, as ffmpeg sends it",
        h(
            '02 0007 "connect" 00 3ff0000000000000 03'
            ' 0003 "app" 02 0004 "live"'
            ' 0004 "type" 02 000a "nonprivate"'
            ' 0008 "flashVer" 02 0008 "FMLE/3.0"'
            ' 0005 "tcUrl" 02 0015 "rtmp://127.0.0.1/live"'
            " 000009"
        ),
        [
            "connect",
            1.0,
            {"app": "live", "type": "nonprivate", "flashVer": "FMLE/3.0", "tcUrl": "rtmp://127.0.0.1/live"},
        ],
    ),
    (
        "@setDataFrame onMetaData with an ECMA array",
        h(
            '02 000d "@setDataFrame" 02 000a "onMetaData" 08 00000003'
            ' 0005 "width" 00 4094000000000000'
            ' 0006 "height" 00 4086800000000000'
            ' 000c "videocodecid" 00 401c000000000000'
            " 000009"
        ),
        ["@setDataFrame", "onMetaData", EcmaArray(width=1280.0, height=720.0, videocodecid=7.0)],
    ),
    (
        "onStatus with nested object",
        h(
            '02 0008 "onStatus" 00 0000000000000000 05 03'
            ' 0005 "level" 02 0005 "error"'
            ' 0004 "data" 03 0001 "n" 01 01 000009'
            " 000009"
        ),
        ["onStatus", 0.0, None, {"level": "error", "data": {"n": True}}],
    ),
]


@pytest.mark.parametrize(("name", "data", "values"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_decode_and_round_trip(name: str, data: bytes, values: list[object]) -> None:
    decoded = amf0.decode_all(data)
    assert decoded == values
    assert amf0.encode(*decoded) == data
    assert amf0.encode(*values) == data


def test_ecma_array_decodes_to_ecma_array_dict() -> None:
    value = amf0.decode_all(GOLDEN[12][1])[2]
    assert isinstance(value, EcmaArray)
    assert isinstance(value, dict)


def test_ecma_array_count_is_only_a_hint() -> None:
    data = h('08 00000000 0001 "a" 00 3ff0000000000000 000009')  # count says 0, holds one pair
    assert amf0.decode_all(data) == [{"a": 1.0}]


def test_int_encodes_as_number_and_bool_as_boolean() -> None:
    assert amf0.encode(3) == h("00 4008000000000000")
    assert amf0.encode(True) == h("01 01")


def test_tuple_encodes_as_strict_array() -> None:
    assert amf0.encode((1, 2)) == amf0.encode([1.0, 2.0])


def test_long_string_decodes_and_long_text_encodes_as_long_string() -> None:
    assert amf0.decode_all(h('0c 00000002 "hi"')) == ["hi"]
    text = "x" * 70000
    data = amf0.encode(text)
    assert data[0] == amf0.LONG_STRING
    assert amf0.decode_all(data) == [text]


def test_decode_with_offset() -> None:
    data = h('02 0001 "a" 00 4000000000000000')
    value, offset = amf0.decode(data, 4)
    assert (value, offset) == (2.0, len(data))


def test_nan_survives() -> None:
    [value] = amf0.decode_all(amf0.encode(math.nan))
    assert math.isnan(value)


def test_undefined_is_a_singleton_distinct_from_none() -> None:
    assert amf0.decode_all(h("06"))[0] is UNDEFINED
    assert repr(UNDEFINED) == "UNDEFINED"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (h("00 3ff0"), "AMF0 number truncated at offset 1"),
        (h("01"), "AMF0 boolean truncated"),
        (h('02 0005 "abc"'), "AMF0 string truncated at offset 3: need 5 bytes"),
        (h("02 00"), "AMF0 string length truncated"),
        (h("02 0002 c328"), "not valid UTF-8"),
        (h("0d"), "unsupported AMF0 type marker 0x0d at offset 0"),
        (h("07 0001"), "unsupported AMF0 type marker 0x07"),
        (h("11 02"), "unsupported AMF0 type marker 0x11"),
        (h("10"), "unsupported AMF0 type marker 0x10"),
        (h("09"), "object end marker outside an object"),
        (h('03 0001 "a" 05'), "AMF0 string length truncated"),  # no object end
        (h('03 0001 "a" 09'), "object end marker outside an object"),
        (h("0a ffffffff 05"), "strict array count 4294967295 exceeds the 1 bytes left"),
        (h("08 0000"), "ECMA array count truncated"),
        (h("0b 00"), "AMF0 date truncated"),
    ],
)
def test_malformed_input_raises_protocol_error(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        amf0.decode_all(data)
    assert message in str(info.value)


def test_empty_input_holds_no_values_but_no_single_value_either() -> None:
    assert amf0.decode_all(b"") == []
    with pytest.raises(ProtocolError, match="type marker truncated"):
        amf0.decode(b"", 0)


def test_nesting_deeper_than_limit_is_rejected() -> None:
    deep = b"\x0a\x00\x00\x00\x01" * (amf0.MAX_DEPTH + 1) + b"\x05"
    with pytest.raises(ProtocolError, match="nested deeper than 64"):
        amf0.decode_all(deep)
    ok = b"\x0a\x00\x00\x00\x01" * amf0.MAX_DEPTH + b"\x05"
    assert amf0.decode_all(ok)


def test_encode_rejects_what_amf0_cannot_carry() -> None:
    with pytest.raises(TypeError, match="cannot encode bytes"):
        amf0.encode(b"x")
    with pytest.raises(TypeError, match="keys must be str"):
        amf0.encode({1: "a"})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nested deeper"):
        amf0.encode(loop)
