"""Program-specific information: the PAT and PMT sections, with their MPEG-2 CRC-32. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PAT_PID: Final = 0x0000
NULL_PID: Final = 0x1FFF
TABLE_PAT: Final = 0x00
TABLE_PMT: Final = 0x02

STREAM_TYPE_AAC_ADTS: Final = 0x0F
STREAM_TYPE_H264: Final = 0x1B
STREAM_TYPE_NAMES: Final = {
    0x01: "mpeg1video",
    0x02: "mpeg2video",
    0x03: "mp3",
    0x04: "mp3",
    0x06: "private data",
    0x0F: "aac",
    0x11: "aac-latm",
    0x15: "id3 metadata",
    0x1B: "h264",
    0x24: "hevc",
    0x81: "ac3",
    0x87: "eac3",
}


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE: Final = _crc_table()


def crc32_mpeg2(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[((crc >> 24) ^ byte) & 0xFF]
    return crc


@dataclass(frozen=True)
class ElementaryStream:
    stream_type: int
    pid: int


@dataclass(frozen=True)
class Pmt:
    program: int
    version: int
    pcr_pid: int
    streams: tuple[ElementaryStream, ...]


def _section(table_id: int, id_field: int, version: int, body: bytes) -> bytes:
    length = 5 + len(body) + 4  # after the length field: id, version, numbers, body, CRC
    head = bytes(
        (
            table_id,
            0xB0 | (length >> 8),  # section_syntax_indicator, '0', reserved
            length & 0xFF,
            id_field >> 8,
            id_field & 0xFF,
            0xC1 | ((version & 0x1F) << 1),  # reserved, version, current_next_indicator
            0,  # section_number
            0,  # last_section_number
        )
    )
    section = head + body
    return section + crc32_mpeg2(section).to_bytes(4, "big")


def pat_section(program: int, pmt_pid: int, transport_stream_id: int = 1, version: int = 0) -> bytes:
    return _section(
        TABLE_PAT,
        transport_stream_id,
        version,
        bytes((program >> 8, program & 0xFF, 0xE0 | (pmt_pid >> 8), pmt_pid & 0xFF)),
    )


def pmt_section(pmt: Pmt) -> bytes:
    body = bytearray((0xE0 | (pmt.pcr_pid >> 8), pmt.pcr_pid & 0xFF, 0xF0, 0x00))
    for es in pmt.streams:
        body += bytes((es.stream_type, 0xE0 | (es.pid >> 8), es.pid & 0xFF, 0xF0, 0x00))
    return _section(TABLE_PMT, pmt.program, pmt.version, bytes(body))


def _checked(section: bytes, table_id: int) -> tuple[int, int, bytes]:
    """(id field, version, body) of a complete long-form section; ``ValueError`` when it is not one."""
    if len(section) < 12:
        raise ValueError("PSI section is too short")
    if section[0] != table_id:
        raise ValueError(f"PSI table id {section[0]} is not {table_id}")
    length = ((section[1] & 0x0F) << 8) | section[2]
    if length < 9 or 3 + length > len(section):
        raise ValueError("PSI section length is invalid")
    section = section[: 3 + length]
    if crc32_mpeg2(section) != 0:  # the CRC over data and CRC is zero
        raise ValueError("PSI section CRC mismatch")
    return (section[3] << 8) | section[4], (section[5] >> 1) & 0x1F, section[8:-4]


def parse_pat(section: bytes) -> dict[int, int]:
    """program number -> PMT PID (program 0, the network PID, left out)."""
    _, _, body = _checked(section, TABLE_PAT)
    programs = {}
    for pos in range(0, len(body) - 3, 4):
        number = (body[pos] << 8) | body[pos + 1]
        pid = ((body[pos + 2] & 0x1F) << 8) | body[pos + 3]
        if number:
            programs[number] = pid
    return programs


def parse_pmt(section: bytes) -> Pmt:
    program, version, body = _checked(section, TABLE_PMT)
    if len(body) < 4:
        raise ValueError("PMT is too short")
    pcr_pid = ((body[0] & 0x1F) << 8) | body[1]
    pos = 4 + (((body[2] & 0x0F) << 8) | body[3])
    streams = []
    while pos + 5 <= len(body):
        stream_type = body[pos]
        pid = ((body[pos + 1] & 0x1F) << 8) | body[pos + 2]
        info_length = ((body[pos + 3] & 0x0F) << 8) | body[pos + 4]
        streams.append(ElementaryStream(stream_type, pid))
        pos += 5 + info_length
    return Pmt(program, version, pcr_pid, tuple(streams))
