"""AMF0 (Action Message Format, version 0): the value encoding of RTMP commands and data messages.

``encode(*values)`` and ``decode_all(data)`` cover what RTMP peers exchange: numbers, booleans,
strings, objects, null, undefined, ECMA arrays, strict arrays and dates. Python ``int`` encodes as a
number (AMF0 has no integer type) and decodes back as ``float``. ECMA arrays decode to ``EcmaArray``
(a ``dict``), so a decoded value re-encodes to the same bytes. References, typed objects, XML and the
AMF3 switch are rejected: no RTMP publisher we accept sends them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from .errors import ProtocolError

NUMBER: Final = 0x00
BOOLEAN: Final = 0x01
STRING: Final = 0x02
OBJECT: Final = 0x03
NULL: Final = 0x05
UNDEFINED_MARKER: Final = 0x06
ECMA_ARRAY: Final = 0x08
OBJECT_END: Final = 0x09
STRICT_ARRAY: Final = 0x0A
DATE: Final = 0x0B
LONG_STRING: Final = 0x0C

MAX_DEPTH: Final = 64

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")
_OBJECT_END_BYTES: Final = b"\x00\x00\x09"


class _Undefined(Enum):
    """AMF0 ``undefined``: distinct from ``null`` (None) on the wire."""

    UNDEFINED = "undefined"

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = _Undefined.UNDEFINED


class EcmaArray(dict[str, Any]):
    """An AMF0 ECMA array (associative array), as used by ``onMetaData``; encodes with marker 0x08."""


@dataclass(frozen=True, slots=True)
class Amf0Date:
    ms: float  # milliseconds since the Unix epoch, UTC
    tz: int = 0  # reserved by the spec; kept for round trips


# --- encoding ---


def encode(*values: Any) -> bytes:
    out = bytearray()
    for value in values:
        _encode_value(out, value, 0)
    return bytes(out)


def _encode_value(out: bytearray, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"AMF0 value nested deeper than {MAX_DEPTH}")
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out += bytes((BOOLEAN, 1 if value else 0))
    elif isinstance(value, int | float):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += _U16.pack(len(raw))
        else:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, EcmaArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_properties(out, value, depth)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_properties(out, value, depth)
    elif isinstance(value, list | tuple):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode_value(out, item, depth + 1)
    elif isinstance(value, Amf0Date):
        out.append(DATE)
        out += _DATE.pack(value.ms, value.tz)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")


def _encode_properties(out: bytearray, obj: dict[str, Any], depth: int) -> None:
    for key, item in obj.items():
        if not isinstance(key, str):
            raise TypeError(f"AMF0 object keys must be str, not {type(key).__name__}")
        raw = key.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise ValueError(f"AMF0 object key of {len(raw)} bytes exceeds 65535")
        out += _U16.pack(len(raw))
        out += raw
        _encode_value(out, item, depth + 1)
    out += _OBJECT_END_BYTES


# --- decoding ---


def decode_all(data: bytes | bytearray | memoryview) -> list[Any]:
    """Every value in ``data``, which must hold whole values only."""
    buf = bytes(data)
    values: list[Any] = []
    offset = 0
    while offset < len(buf):
        value, offset = decode(buf, offset)
        values.append(value)
    return values


def decode(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Any, int]:
    """One value starting at ``offset``; returns it and the offset just past it."""
    return _Decoder(data if isinstance(data, bytes) else bytes(data)).value(offset, 0)


class _Decoder:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def need(self, offset: int, size: int, what: str) -> None:
        if offset < 0 or offset + size > len(self.data):
            raise ProtocolError(f"AMF0 {what} truncated at offset {offset}: need {size} bytes")

    def value(self, offset: int, depth: int) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise ProtocolError(f"AMF0 value nested deeper than {MAX_DEPTH}")
        self.need(offset, 1, "type marker")
        marker = self.data[offset]
        offset += 1
        if marker == NUMBER:
            self.need(offset, 8, "number")
            return _DOUBLE.unpack_from(self.data, offset)[0], offset + 8
        if marker == BOOLEAN:
            self.need(offset, 1, "boolean")
            return self.data[offset] != 0, offset + 1
        if marker == STRING:
            return self.string(offset, 2)
        if marker == LONG_STRING:
            return self.string(offset, 4)
        if marker == OBJECT:
            obj: dict[str, Any] = {}
            return obj, self.properties(obj, offset, depth)
        if marker == NULL:
            return None, offset
        if marker == UNDEFINED_MARKER:
            return UNDEFINED, offset
        if marker == ECMA_ARRAY:
            self.need(offset, 4, "ECMA array count")
            array = EcmaArray()
            return array, self.properties(array, offset + 4, depth)
        if marker == STRICT_ARRAY:
            return self.strict_array(offset, depth)
        if marker == DATE:
            self.need(offset, 10, "date")
            ms, tz = _DATE.unpack_from(self.data, offset)
            return Amf0Date(ms, tz), offset + 10
        if marker == OBJECT_END:
            raise ProtocolError(f"AMF0 object end marker outside an object at offset {offset - 1}")
        raise ProtocolError(f"unsupported AMF0 type marker 0x{marker:02x} at offset {offset - 1}")

    def string(self, offset: int, width: int) -> tuple[str, int]:
        self.need(offset, width, "string length")
        size = (_U16 if width == 2 else _U32).unpack_from(self.data, offset)[0]
        offset += width
        self.need(offset, size, "string")
        try:
            text = self.data[offset : offset + size].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"AMF0 string at offset {offset} is not valid UTF-8: {exc.reason}") from None
        return text, offset + size

    def properties(self, obj: dict[str, Any], offset: int, depth: int) -> int:
        """Key/value pairs up to the empty key + object end marker; the ECMA count is only a hint."""
        while True:
            key, offset = self.string(offset, 2)
            if key == "" and offset < len(self.data) and self.data[offset] == OBJECT_END:
                return offset + 1
            obj[key], offset = self.value(offset, depth + 1)

    def strict_array(self, offset: int, depth: int) -> tuple[list[Any], int]:
        self.need(offset, 4, "strict array count")
        count = _U32.unpack_from(self.data, offset)[0]
        offset += 4
        if count > len(self.data) - offset:  # every element takes at least one byte
            raise ProtocolError(
                f"AMF0 strict array count {count} exceeds the {len(self.data) - offset} bytes left"
            )
        items: list[Any] = []
        for _ in range(count):
            item, offset = self.value(offset, depth + 1)
            items.append(item)
        return items, offset
