"""AAC between ADTS (MPEG-TS) and raw frames with an AudioSpecificConfig. Pure.

ADTS (ISO/IEC 13818-7) carries a 7-byte header (9 with CRC) before every frame; the canonical form
(FLV, MP4, Fanout's MediaPacket) is the raw frame plus a 2-byte AudioSpecificConfig.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SAMPLE_RATES: Final = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)
SAMPLES_PER_FRAME: Final = 1024


@dataclass(frozen=True)
class AdtsFrame:
    raw: bytes
    config: bytes  # AudioSpecificConfig
    sample_rate: int
    channels: int


def parse_frames(data: bytes) -> tuple[list[AdtsFrame], int]:
    """Every whole ADTS frame in ``data`` and the count of bytes skipped (garbage, truncated frames)."""
    frames: list[AdtsFrame] = []
    skipped = 0
    pos, end = 0, len(data)
    while pos + 7 <= end:
        if data[pos] != 0xFF or data[pos + 1] & 0xF6 != 0xF0:  # syncword, layer 0
            nxt = data.find(b"\xff", pos + 1)
            nxt = end if nxt < 0 else nxt
            skipped += nxt - pos
            pos = nxt
            continue
        protection_absent = data[pos + 1] & 1
        profile = data[pos + 2] >> 6
        rate_index = (data[pos + 2] >> 2) & 0x0F
        channels = ((data[pos + 2] & 1) << 2) | (data[pos + 3] >> 6)
        length = ((data[pos + 3] & 3) << 11) | (data[pos + 4] << 3) | (data[pos + 5] >> 5)
        blocks = (data[pos + 6] & 3) + 1
        header = 7 if protection_absent else 9
        if rate_index >= len(SAMPLE_RATES) or length < header or blocks != 1:
            skipped += 1
            pos += 1
            continue
        if pos + length > end:
            break
        raw = data[pos + header : pos + length]
        if raw:
            config = audio_specific_config(profile + 1, rate_index, channels)
            frames.append(AdtsFrame(raw, config, SAMPLE_RATES[rate_index], channels))
        pos += length
    return frames, skipped + (end - pos)


def audio_specific_config(object_type: int, rate_index: int, channels: int) -> bytes:
    value = (object_type << 11) | (rate_index << 7) | (channels << 3)
    return value.to_bytes(2, "big")


def parse_config(config: bytes) -> tuple[int, int, int]:
    """(audio object type, sampling frequency index, channel configuration) of a 2-byte-or-longer ASC
    that ADTS can express (object types 1 to 4, a tabled sample rate)."""
    if len(config) < 2:
        raise ValueError("AudioSpecificConfig is shorter than 2 bytes")
    value = int.from_bytes(config[:2], "big")
    object_type, rate_index, channels = value >> 11, (value >> 7) & 0x0F, (value >> 3) & 0x0F
    if not 1 <= object_type <= 4:
        raise ValueError(f"AAC object type {object_type} cannot be carried in ADTS")
    if rate_index >= len(SAMPLE_RATES):
        raise ValueError("AudioSpecificConfig has an explicit sample rate ADTS cannot carry")
    return object_type, rate_index, channels


def adts_header(config: bytes, raw_length: int) -> bytes:
    object_type, rate_index, channels = parse_config(config)
    length = raw_length + 7
    if length >= 1 << 13:
        raise ValueError(f"AAC frame of {raw_length} bytes does not fit an ADTS frame")
    return bytes(
        (
            0xFF,
            0xF1,  # MPEG-4, layer 0, no CRC
            ((object_type - 1) << 6) | (rate_index << 2) | (channels >> 2),
            ((channels & 3) << 6) | (length >> 11),
            (length >> 3) & 0xFF,
            ((length & 7) << 5) | 0x1F,  # buffer fullness 0x7FF: variable rate
            0xFC,  # one raw data block
        )
    )
