"""FLV tag bodies (the payloads of RTMP audio, video and data messages) <-> MediaPacket.

``FlvDemuxer`` turns a publisher's tags into canonical packets: H.264 as 4-byte length-prefixed NAL
units with the avcC on keyframes, AAC raw frames with the AudioSpecificConfig on every frame, and
onMetaData as AMF0. ``FlvMuxer`` and the pure ``*_body`` / ``*_sequence_header`` functions go the
other way; a fan-out builds each body once and shares it between destinations.
"""

from __future__ import annotations

from typing import Final

from shared.messages import MediaPacket
from shared.rtmp import amf0
from shared.rtmp.chunk import AUDIO, DATA_AMF0, VIDEO

TICKS_PER_MS: Final = 90  # MediaPacket times are in 1/90000 s

VIDEO_CODEC_AVC: Final = 7
SOUND_FORMAT_AAC: Final = 10
FRAME_KEY: Final = 1
FRAME_INTER: Final = 2
FRAME_INFO: Final = 5  # video info/command frame: no picture
AVC_SEQUENCE_HEADER: Final = 0
AVC_NALU: Final = 1
AVC_END_OF_SEQUENCE: Final = 2
AAC_SEQUENCE_HEADER: Final = 0
AAC_RAW: Final = 1
_AAC_FLAGS: Final = 0xAF  # AAC, and the 44 kHz / 16-bit / stereo bits the FLV spec fixes for AAC

SET_DATA_FRAME: Final = amf0.encode("@setDataFrame")
_AAC_RATES: Final = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)
_HIGH_PROFILES: Final = frozenset((100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135))


class UnsupportedCodec(ValueError):
    """A codec we do not carry. The message names only the codec, so a shell can log it once."""


# --- demuxing ---


class FlvDemuxer:
    def __init__(self, source: str = "") -> None:
        self.source = source
        self.video_config = b""  # avcC, rewritten to declare 4-byte NAL lengths
        self.audio_config = b""  # AudioSpecificConfig
        self.profile = 0
        self.level = 0
        self.width = 0
        self.height = 0
        self.audio_object_type = 0
        self.audio_sample_rate = 0
        self.channels = 0
        self.dropped_before_config = 0  # frames that came before their sequence header
        self._nal_length_size = 4

    def on_video(self, timestamp_ms: int, body: bytes, recv_ns: int = 0) -> MediaPacket | None:
        if not body:
            return None
        first = body[0]
        if first & 0x80:  # Enhanced RTMP: a FourCC instead of a codec id
            raise UnsupportedCodec(f"unsupported FLV video codec {bytes(body[1:5])!r}")
        frame_type, codec = first >> 4, first & 0x0F
        if frame_type == FRAME_INFO:
            return None
        if codec != VIDEO_CODEC_AVC:
            raise UnsupportedCodec(f"unsupported FLV video codec id {codec}")
        if len(body) < 5:
            raise ValueError(f"AVC video tag of {len(body)} bytes is shorter than its 5-byte header")
        packet_type = body[1]
        if packet_type == AVC_SEQUENCE_HEADER:
            self._set_video_config(bytes(body[5:]))
            return None
        if packet_type == AVC_END_OF_SEQUENCE:
            return None
        if packet_type != AVC_NALU:
            raise ValueError(f"unknown AVC packet type {packet_type}")
        if not self.video_config:
            self.dropped_before_config += 1
            return None
        data = to_four_byte_lengths(bytes(body[5:]), self._nal_length_size)
        if not data:
            return None
        dts = timestamp_ms * TICKS_PER_MS
        cts = int.from_bytes(body[2:5], "big", signed=True)
        keyframe = frame_type == FRAME_KEY
        return MediaPacket(
            kind="video",
            codec="h264",
            dts=dts,
            pts=dts + cts * TICKS_PER_MS,
            keyframe=keyframe,
            data=data,
            config=self.video_config if keyframe else b"",
            source=self.source,
            recv_ns=recv_ns,
        )

    def _set_video_config(self, avcc: bytes) -> None:
        length_size = avcc_nal_length_size(avcc)
        sps = first_sps(avcc)
        self._nal_length_size = length_size
        self.video_config = avcc[:4] + bytes(((avcc[4] & 0xFC) | 3,)) + avcc[5:]
        self.profile, self.level = avcc[1], avcc[3]
        self.width, self.height = sps_dimensions(sps)

    def on_audio(self, timestamp_ms: int, body: bytes, recv_ns: int = 0) -> MediaPacket | None:
        if not body:
            return None
        sound_format = body[0] >> 4
        if sound_format != SOUND_FORMAT_AAC:
            raise UnsupportedCodec(f"unsupported FLV sound format {sound_format}")
        if len(body) < 2:
            raise ValueError("AAC audio tag has no packet type")
        packet_type = body[1]
        if packet_type == AAC_SEQUENCE_HEADER:
            asc = bytes(body[2:])
            self.audio_object_type, self.audio_sample_rate, self.channels = parse_audio_specific_config(asc)
            self.audio_config = asc
            return None
        if packet_type != AAC_RAW:
            raise ValueError(f"unknown AAC packet type {packet_type}")
        if not self.audio_config:
            self.dropped_before_config += 1
            return None
        if len(body) == 2:
            return None
        dts = timestamp_ms * TICKS_PER_MS
        return MediaPacket(
            kind="audio",
            codec="aac",
            dts=dts,
            pts=dts,
            keyframe=True,  # every AAC frame decodes on its own
            data=bytes(body[2:]),
            config=self.audio_config,
            source=self.source,
            recv_ns=recv_ns,
        )

    def on_data(self, timestamp_ms: int, body: bytes) -> MediaPacket | None:
        """onMetaData (with or without the @setDataFrame wrapper) as a data packet; other data
        messages (cue points, text) are dropped."""
        values = amf0.decode_all(body)
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) < 2 or values[0] != "onMetaData" or not isinstance(values[1], dict):
            return None
        dts = timestamp_ms * TICKS_PER_MS
        return MediaPacket(
            kind="data",
            codec="amf0",
            dts=dts,
            pts=dts,
            keyframe=False,
            data=amf0.encode("onMetaData", values[1]),
            source=self.source,
        )


def avcc_nal_length_size(avcc: bytes) -> int:
    if len(avcc) < 7:
        raise ValueError(f"avcC of {len(avcc)} bytes is shorter than 7")
    if avcc[0] != 1:
        raise ValueError(f"avcC configuration version {avcc[0]} is not 1")
    return (avcc[4] & 0x03) + 1


def first_sps(avcc: bytes) -> bytes:
    """The first SPS, after checking that every SPS and PPS length fits in the avcC."""
    count = avcc[5] & 0x1F
    if count == 0:
        raise ValueError("avcC has no SPS")
    pos = 6
    units: list[bytes] = []
    for kind, number in (("SPS", count), ("PPS", -1)):
        if number < 0:
            if pos >= len(avcc):
                raise ValueError("avcC ends before its PPS count")
            number = avcc[pos]
            pos += 1
        for _ in range(number):
            size = int.from_bytes(avcc[pos : pos + 2], "big")
            if pos + 2 + size > len(avcc):
                raise ValueError(f"avcC {kind} of {size} bytes at offset {pos} overruns the avcC")
            units.append(avcc[pos + 2 : pos + 2 + size])
            pos += 2 + size
    return units[0]


def to_four_byte_lengths(data: bytes, length_size: int) -> bytes:
    """Validate length-prefixed NAL units and return them with 4-byte lengths (as-is when already)."""
    end = len(data)
    pos = 0
    out: list[bytes] | None = None if length_size == 4 else []
    while pos < end:
        if pos + length_size > end:
            raise ValueError(f"H.264 frame ends inside a NAL unit length at offset {pos}")
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if pos + size > end:
            raise ValueError(f"H.264 NAL unit of {size} bytes at offset {pos} overruns the {end}-byte frame")
        if out is not None:
            out.append(size.to_bytes(4, "big"))
            out.append(data[pos : pos + size])
        pos += size
    return data if out is None else b"".join(out)


def parse_audio_specific_config(asc: bytes) -> tuple[int, int, int]:
    """(audio object type, sample rate, channel configuration) from an AudioSpecificConfig."""
    if len(asc) < 2:
        raise ValueError(f"AudioSpecificConfig of {len(asc)} bytes is shorter than 2")
    bits = _BitReader(asc)
    try:
        object_type = bits.u(5)
        if object_type == 31:
            object_type = 32 + bits.u(6)
        rate_index = bits.u(4)
        if rate_index == 15:
            rate = bits.u(24)
        elif rate_index < len(_AAC_RATES):
            rate = _AAC_RATES[rate_index]
        else:
            raise ValueError(f"AudioSpecificConfig sampling frequency index {rate_index} is reserved")
        channels = bits.u(4)
    except EOFError:
        raise ValueError("AudioSpecificConfig is truncated") from None
    return object_type, rate, channels


# --- SPS: just enough to know the picture size ---


class _BitReader:
    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = len(data) * 8

    def u(self, count: int) -> int:
        if count > self._left:
            raise EOFError
        self._left -= count
        return (self._value >> self._left) & ((1 << count) - 1)

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise EOFError
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code & 1 else -(code // 2)


def sps_dimensions(sps: bytes) -> tuple[int, int]:
    """Cropped picture (width, height) from an H.264 SPS NAL unit; (0, 0) if it cannot be parsed."""
    rbsp = bytes(sps[1:]).replace(b"\x00\x00\x03", b"\x00\x00")
    try:
        return _sps_dimensions(_BitReader(rbsp))
    except EOFError:
        return 0, 0


def _sps_dimensions(bits: _BitReader) -> tuple[int, int]:
    profile_idc = bits.u(8)
    bits.u(16)  # constraint flags, level_idc
    bits.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_planes = 0
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = bits.ue()
        if chroma_format_idc == 3:
            separate_planes = bits.u(1)
        bits.ue()  # bit_depth_luma_minus8
        bits.ue()  # bit_depth_chroma_minus8
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(12 if chroma_format_idc == 3 else 8):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.u(1)
        bits.se()
        bits.se()
        for _ in range(min(bits.ue(), 255)):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = bits.ue() + 1
    height_map_units = bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)  # mb_adaptive_frame_field_flag
    bits.u(1)  # direct_8x8_inference_flag
    crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue()) if bits.u(1) else (0, 0, 0, 0)
    if chroma_format_idc == 0 or separate_planes:
        crop_x, crop_y = 1, 2 - frame_mbs_only
    else:
        crop_x = 2 if chroma_format_idc in (1, 2) else 1
        crop_y = (2 if chroma_format_idc == 1 else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - (crop[0] + crop[1]) * crop_x
    height = (2 - frame_mbs_only) * height_map_units * 16 - (crop[2] + crop[3]) * crop_y
    return (width, height) if width > 0 and height > 0 else (0, 0)


def _skip_scaling_list(bits: _BitReader, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale or last


# --- muxing ---


def video_body(packet: MediaPacket) -> bytes:
    """An AVC NALU tag body: frame type, AVCPacketType 1, signed 24-bit composition time, NAL units."""
    cts = round((packet.pts - packet.dts) / TICKS_PER_MS)
    if not -0x800000 <= cts <= 0x7FFFFF:
        raise ValueError(f"composition time offset {cts} ms does not fit 24 bits")
    head = bytes((0x17 if packet.keyframe else 0x27, AVC_NALU)) + cts.to_bytes(3, "big", signed=True)
    return head + packet.data


def audio_body(packet: MediaPacket) -> bytes:
    return bytes((_AAC_FLAGS, AAC_RAW)) + packet.data


def avc_sequence_header(avcc: bytes) -> bytes:
    return bytes((0x17, AVC_SEQUENCE_HEADER, 0, 0, 0)) + avcc


def aac_sequence_header(asc: bytes) -> bytes:
    return bytes((_AAC_FLAGS, AAC_SEQUENCE_HEADER)) + asc


def data_body(packet: MediaPacket) -> bytes:
    return SET_DATA_FRAME + packet.data


class FlvMuxer:
    """MediaPackets -> (RTMP type id, timestamp ms, tag body), with sequence headers whenever the
    configuration changes. Nothing is emitted for video until a keyframe carrying its avcC."""

    def __init__(self) -> None:
        self._video_config = b""
        self._audio_config = b""

    def mux(self, packet: MediaPacket) -> list[tuple[int, int, bytes]]:
        timestamp = packet.dts // TICKS_PER_MS
        out: list[tuple[int, int, bytes]] = []
        if packet.kind == "video":
            _check_codec(packet, "h264")
            if packet.keyframe and packet.config and packet.config != self._video_config:
                self._video_config = packet.config
                out.append((VIDEO, timestamp, avc_sequence_header(packet.config)))
            if self._video_config:
                out.append((VIDEO, timestamp, video_body(packet)))
        elif packet.kind == "audio":
            _check_codec(packet, "aac")
            if packet.config and packet.config != self._audio_config:
                self._audio_config = packet.config
                out.append((AUDIO, timestamp, aac_sequence_header(packet.config)))
            if self._audio_config:
                out.append((AUDIO, timestamp, audio_body(packet)))
        elif packet.kind == "data":
            _check_codec(packet, "amf0")
            out.append((DATA_AMF0, timestamp, data_body(packet)))
        return out


def _check_codec(packet: MediaPacket, expected: str) -> None:
    if packet.codec != expected:
        raise UnsupportedCodec(f"unsupported {packet.kind} codec {packet.codec!r} for FLV")
