"""H.264 access units between Annex-B (MPEG-TS) and the canonical 4-byte length-prefixed form. Pure.

``split_annexb`` finds NAL units between start codes; ``to_length_prefixed`` and ``to_annexb`` convert an
access unit; ``avcc`` builds the AVCDecoderConfigurationRecord (ISO/IEC 14496-15) from SPS and PPS, and
``avcc_parameter_sets`` reads them back out.
"""

from __future__ import annotations

from typing import Final

NAL_SLICE: Final = 1
NAL_IDR: Final = 5
NAL_SEI: Final = 6
NAL_SPS: Final = 7
NAL_PPS: Final = 8
NAL_AUD: Final = 9
NAL_FILLER: Final = 12

START_CODE: Final = b"\x00\x00\x00\x01"
AUD: Final = START_CODE + bytes((NAL_AUD, 0xF0))  # access unit delimiter: any picture type
_HIGH_PROFILES: Final = frozenset((100, 110, 122, 144))  # avcC carries chroma and bit-depth fields


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B byte stream (3- or 4-byte start codes); bytes before the first start
    code and empty units are ignored."""
    units: list[bytes] = []
    find = data.find
    pos = find(b"\x00\x00\x01")
    while pos >= 0:
        start = pos + 3
        nxt = find(b"\x00\x00\x01", start)
        end = len(data) if nxt < 0 else nxt
        unit = data[start:end]
        if nxt >= 0:
            unit = unit.rstrip(b"\x00")  # the next start code's leading zero, trailing_zero_8bits
        if unit:
            units.append(unit)
        pos = nxt
    return units


def nal_type(unit: bytes) -> int:
    return unit[0] & 0x1F


def length_prefixed(units: list[bytes]) -> bytes:
    return b"".join(len(u).to_bytes(4, "big") + u for u in units)


def split_length_prefixed(data: bytes) -> list[bytes]:
    """NAL units of a 4-byte length-prefixed access unit; raises ``ValueError`` if a length overruns."""
    units: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if pos + 4 > end:
            raise ValueError(f"H.264 access unit ends inside a NAL length at offset {pos}")
        size = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        if pos + size > end:
            raise ValueError(f"H.264 NAL unit of {size} bytes at offset {pos} overruns the access unit")
        if size:
            units.append(data[pos : pos + size])
        pos += size
    return units


def to_annexb(units: list[bytes]) -> bytes:
    return b"".join(START_CODE + u for u in units)


def avcc(sps: list[bytes], pps: list[bytes]) -> bytes:
    """An avcC declaring 4-byte NAL lengths, from the SPS and PPS NAL units (headers included)."""
    if not sps or not pps:
        raise ValueError("an avcC needs at least one SPS and one PPS")
    first = sps[0]
    if len(first) < 4:
        raise ValueError(f"SPS of {len(first)} bytes is too short")
    if len(sps) > 31 or len(pps) > 255:
        raise ValueError("too many parameter sets for an avcC")
    out = bytearray((1, first[1], first[2], first[3], 0xFF, 0xE0 | len(sps)))
    for unit in sps:
        out += len(unit).to_bytes(2, "big") + unit
    out.append(len(pps))
    for unit in pps:
        out += len(unit).to_bytes(2, "big") + unit
    if first[1] in _HIGH_PROFILES:
        chroma, luma_depth, chroma_depth = sps_chroma_and_depth(first)
        out += bytes((0xFC | chroma, 0xF8 | luma_depth, 0xF8 | chroma_depth, 0))
    return bytes(out)


def avcc_parameter_sets(record: bytes) -> tuple[list[bytes], list[bytes]]:
    """(SPS list, PPS list) of an avcC; raises ``ValueError`` when it is malformed."""
    if len(record) < 7 or record[0] != 1:
        raise ValueError("not an avcC (version 1)")
    pos = 5
    out: list[list[bytes]] = [[], []]
    for index in (0, 1):
        if pos >= len(record):
            raise ValueError("avcC ends before its parameter set count")
        count = record[pos] & (0x1F if index == 0 else 0xFF)
        pos += 1
        for _ in range(count):
            size = int.from_bytes(record[pos : pos + 2], "big")
            if pos + 2 + size > len(record) or size == 0:
                raise ValueError("avcC parameter set overruns the record")
            out[index].append(record[pos + 2 : pos + 2 + size])
            pos += 2 + size
    return out[0], out[1]


class _Bits:
    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = len(data) * 8

    def u(self, n: int) -> int:
        if n > self._left:
            raise ValueError("SPS is truncated")
        self._left -= n
        return (self._value >> self._left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("SPS has an invalid Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)


def sps_chroma_and_depth(sps: bytes) -> tuple[int, int, int]:
    """(chroma_format_idc, bit_depth_luma_minus8, bit_depth_chroma_minus8) of a high-profile SPS."""
    rbsp = bytes(sps[1:]).replace(b"\x00\x00\x03", b"\x00\x00")
    bits = _Bits(rbsp)
    profile = bits.u(8)
    bits.u(16)
    bits.ue()  # seq_parameter_set_id
    if profile not in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        return 1, 0, 0
    chroma = bits.ue()
    if chroma == 3:
        bits.u(1)
    return chroma & 3, bits.ue() & 7, bits.ue() & 7
