"""FLV tag bodies <-> MediaPacket: H.264, AAC and onMetaData, both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import flv
from shared.flv import FlvDemuxer, FlvMuxer, UnsupportedCodec
from shared.messages import MediaPacket
from shared.rtmp import amf0, chunk
from shared.rtmp.chunk import ChunkReader

GOLDEN = Path(__file__).parent / "golden"

# SPS/PPS from x264 (ffmpeg testsrc2), one per profile and with and without cropping
SPS_1080P_HIGH = bytes.fromhex("67640028acd940780227e5c044000003000400000300f03c60c658")
SPS_720P_BASELINE = bytes.fromhex("6742c01fd9005005bb0110000003001000000303c0f1832480")
SPS_480P_MAIN = bytes.fromhex("674d401feca06c1ef3780880000003008000001e078c18cb")
SPS_64X48_HIGH = bytes.fromhex("6764000aacd9447b0110000003001000000303c0f1225960")
PPS = bytes.fromhex("68ebe3cb22c0")


def avcc(sps: bytes = SPS_1080P_HIGH, length_size: int = 4) -> bytes:
    head = bytes((1, sps[1], sps[2], sps[3], 0xFC | (length_size - 1), 0xE1))
    return head + len(sps).to_bytes(2, "big") + sps + b"\x01" + len(PPS).to_bytes(2, "big") + PPS


def nals(*units: bytes, size: int = 4) -> bytes:
    return b"".join(len(u).to_bytes(size, "big") + u for u in units)


def video_tag(frame_type: int, packet_type: int, cts: int, payload: bytes) -> bytes:
    return bytes((frame_type << 4 | 7, packet_type)) + cts.to_bytes(3, "big", signed=True) + payload


IDR = nals(b"\x06sei", b"\x65idr-slice")
P_FRAME = nals(b"\x41p-slice")
ASC_LC_44100_STEREO = bytes.fromhex("1210")


def ready_demuxer() -> FlvDemuxer:
    demuxer = FlvDemuxer(source="in1")
    assert demuxer.on_video(0, video_tag(1, 0, 0, avcc())) is None
    assert demuxer.on_audio(0, b"\xaf\x00" + ASC_LC_44100_STEREO) is None
    return demuxer


# --- demuxing video ---


@pytest.mark.parametrize(
    ("sps", "size", "profile", "level"),
    [
        (SPS_1080P_HIGH, (1920, 1080), 100, 40),
        (SPS_720P_BASELINE, (1280, 720), 66, 31),
        (SPS_480P_MAIN, (854, 480), 77, 31),
        (SPS_64X48_HIGH, (64, 48), 100, 10),
    ],
)
def test_sequence_header_sets_config_and_picture_info(
    sps: bytes, size: tuple[int, int], profile: int, level: int
) -> None:
    demuxer = FlvDemuxer()
    assert demuxer.on_video(0, video_tag(1, 0, 0, avcc(sps))) is None
    assert demuxer.video_config == avcc(sps)
    assert (demuxer.width, demuxer.height) == size
    assert (demuxer.profile, demuxer.level) == (profile, level)


def test_keyframe_and_inter_frame_packets() -> None:
    demuxer = ready_demuxer()
    key = demuxer.on_video(1000, video_tag(1, 1, 80, IDR), recv_ns=123)
    assert key == MediaPacket(
        kind="video",
        codec="h264",
        dts=90_000,
        pts=90_000 + 80 * 90,
        keyframe=True,
        data=IDR,
        config=avcc(),
        source="in1",
        recv_ns=123,
    )
    inter = demuxer.on_video(1040, video_tag(2, 1, -40, P_FRAME))
    assert inter is not None
    assert (inter.keyframe, inter.config, inter.dts, inter.pts) == (False, b"", 1040 * 90, 1000 * 90)


def test_short_nal_lengths_are_normalised_to_four_bytes() -> None:
    demuxer = FlvDemuxer()
    demuxer.on_video(0, video_tag(1, 0, 0, avcc(length_size=2)))
    assert demuxer.video_config == avcc(length_size=4)  # the config now describes what we emit
    packet = demuxer.on_video(0, video_tag(1, 1, 0, nals(b"\x65abc", b"\x06d", size=2)))
    assert packet is not None and packet.data == nals(b"\x65abc", b"\x06d", size=4)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (nals(b"\x65abc")[:-1], "NAL unit of 4 bytes at offset 4 overruns the 7-byte frame"),
        (nals(b"\x65abc") + b"\x00\x00", "ends inside a NAL unit length at offset 8"),
        (
            b"\x00\x00\x00\x01\x67\x64\x00\x28\x00",
            "NAL unit of 1677731840 bytes at offset 9 overruns",
        ),  # Annex B start codes are not FLV
    ],
)
def test_malformed_nal_lengths_are_rejected(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ready_demuxer().on_video(0, video_tag(1, 1, 0, payload))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (b"\x01\x64\x00", "avcC of 3 bytes is shorter than 7"),
        (b"\x02" + avcc()[1:], "avcC configuration version 2 is not 1"),
        (avcc()[:5] + b"\xe0" + avcc()[6:], "avcC has no SPS"),
        (avcc()[:-2], "avcC PPS of 6 bytes at offset"),
        (avcc()[: 6 + 2 + len(SPS_1080P_HIGH)], "avcC ends before its PPS count"),
    ],
)
def test_malformed_avcc_is_rejected(config: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FlvDemuxer().on_video(0, video_tag(1, 0, 0, config))


def test_frames_before_the_sequence_header_are_dropped_and_counted() -> None:
    demuxer = FlvDemuxer()
    assert demuxer.on_video(0, video_tag(1, 1, 0, IDR)) is None
    assert demuxer.on_audio(0, b"\xaf\x01abc") is None
    assert demuxer.dropped_before_config == 2


def test_video_without_pictures_gives_nothing() -> None:
    demuxer = ready_demuxer()
    assert demuxer.on_video(0, b"") is None
    assert demuxer.on_video(0, video_tag(1, 2, 0, b"")) is None  # end of sequence
    assert demuxer.on_video(0, b"\x57\x00") is None  # info/command frame
    assert demuxer.on_video(0, video_tag(2, 1, 0, b"")) is None  # no NAL units


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\x12\x00", "unsupported FLV video codec id 2"),  # Sorenson H.263
        (b"\x1c\x00\x00\x00\x00", "unsupported FLV video codec id 12"),  # HEVC, non-standard id
        (b"\x90hvc1", "unsupported FLV video codec b'hvc1'"),  # Enhanced RTMP
        (b"\x2f", "unsupported FLV sound format 2"),  # MP3
    ],
)
def test_unsupported_codecs_name_the_codec(body: bytes, message: str) -> None:
    demuxer = ready_demuxer()
    with pytest.raises(UnsupportedCodec, match=message):
        (demuxer.on_audio if body == b"\x2f" else demuxer.on_video)(0, body)


def test_truncated_and_unknown_video_tags() -> None:
    with pytest.raises(ValueError, match="AVC video tag of 3 bytes"):
        ready_demuxer().on_video(0, b"\x17\x01\x00")
    with pytest.raises(ValueError, match="unknown AVC packet type 7"):
        ready_demuxer().on_video(0, video_tag(1, 7, 0, b""))


# --- demuxing audio and data ---


@pytest.mark.parametrize(
    ("asc", "expected"),
    [
        ("1210", (2, 44100, 2)),
        ("1190", (2, 48000, 2)),
        ("1188", (2, 48000, 1)),
        ("2b92 0800", (5, 22050, 2)),  # HE-AAC signalled explicitly
        ("1780 5dc0 10", (2, 48000, 2)),  # explicit 24-bit rate
        ("f8 ec 20", (39, 24000, 1)),  # escaped object type 32 + 7
    ],
)
def test_audio_specific_config(asc: str, expected: tuple[int, int, int]) -> None:
    assert flv.parse_audio_specific_config(bytes.fromhex(asc.replace(" ", ""))) == expected


@pytest.mark.parametrize(
    ("asc", "message"), [("12", "shorter than 2"), ("16 80", "index 13 is reserved"), ("178000", "truncated")]
)
def test_malformed_audio_specific_config(asc: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FlvDemuxer().on_audio(0, b"\xaf\x00" + bytes.fromhex(asc))


def test_aac_frames_carry_the_config() -> None:
    demuxer = ready_demuxer()
    assert (demuxer.audio_sample_rate, demuxer.channels, demuxer.audio_object_type) == (44100, 2, 2)
    packet = demuxer.on_audio(23, b"\xaf\x01frame", recv_ns=5)
    assert packet == MediaPacket(
        kind="audio",
        codec="aac",
        dts=23 * 90,
        pts=23 * 90,
        keyframe=True,
        data=b"frame",
        config=ASC_LC_44100_STEREO,
        source="in1",
        recv_ns=5,
    )
    assert demuxer.on_audio(0, b"\xaf\x01") is None
    with pytest.raises(ValueError, match="AAC audio tag has no packet type"):
        demuxer.on_audio(0, b"\xaf")
    with pytest.raises(ValueError, match="unknown AAC packet type 2"):
        demuxer.on_audio(0, b"\xaf\x02")


def test_metadata_with_or_without_set_data_frame() -> None:
    meta = amf0.EcmaArray(width=1280.0, height=720.0, encoder="obs")
    expected = amf0.encode("onMetaData", meta)
    for body in (amf0.encode("@setDataFrame", "onMetaData", meta), expected):
        packet = FlvDemuxer("in1").on_data(10, body)
        assert packet == MediaPacket(
            kind="data", codec="amf0", dts=900, pts=900, keyframe=False, data=expected, source="in1"
        )


def test_other_data_messages_are_dropped() -> None:
    demuxer = FlvDemuxer()
    assert demuxer.on_data(0, amf0.encode("onCuePoint", {"name": "x"})) is None
    assert demuxer.on_data(0, amf0.encode("@setDataFrame", "onMetaData")) is None
    assert demuxer.on_data(0, b"") is None
    with pytest.raises(ValueError, match="unsupported AMF0 type marker"):
        demuxer.on_data(0, b"\x11")


def test_golden_ffmpeg_stream_demuxes() -> None:
    messages = ChunkReader().feed((GOLDEN / "ffmpeg_publish.bin").read_bytes()[3073:])
    demuxer = FlvDemuxer()
    packets = []
    for m in messages:
        handler = {chunk.VIDEO: demuxer.on_video, chunk.AUDIO: demuxer.on_audio}.get(m.type_id)
        packet = handler(m.timestamp, m.payload) if handler else None
        if m.type_id == chunk.DATA_AMF0:
            packet = demuxer.on_data(m.timestamp, m.payload)
        if packet is not None:
            packets.append(packet)
    assert [p.kind for p in packets].count("video") == 5
    assert [p.kind for p in packets].count("audio") == 25
    assert packets[0].kind == "data"
    assert (demuxer.width, demuxer.height, demuxer.audio_sample_rate, demuxer.channels) == (64, 48, 48000, 1)
    video = [p for p in packets if p.kind == "video"]
    assert [p.keyframe for p in video] == [True, False, False, False, False]
    assert any(p.pts != p.dts for p in video)  # B-frames: composition offsets


# --- muxing ---


def packet(
    kind: str, dts: int, data: bytes, *, pts: int | None = None, keyframe: bool = False, config: bytes = b""
) -> MediaPacket:
    codec = {"video": "h264", "audio": "aac", "data": "amf0"}[kind]
    return MediaPacket(kind, codec, dts, dts if pts is None else pts, keyframe, data, config)  # type: ignore[arg-type]


def test_muxer_waits_for_a_keyframe_with_config_then_sends_headers_on_change() -> None:
    muxer = FlvMuxer()
    assert muxer.mux(packet("video", 0, P_FRAME)) == []
    assert muxer.mux(packet("video", 0, IDR, keyframe=True)) == []  # no config yet
    out = muxer.mux(packet("video", 9000, IDR, pts=12600, keyframe=True, config=avcc()))
    assert out == [
        (chunk.VIDEO, 100, b"\x17\x00\x00\x00\x00" + avcc()),
        (chunk.VIDEO, 100, b"\x17\x01\x00\x00\x28" + IDR),
    ]
    assert muxer.mux(packet("video", 18000, IDR, keyframe=True, config=avcc())) == [
        (chunk.VIDEO, 200, b"\x17\x01\x00\x00\x00" + IDR)
    ]
    assert muxer.mux(packet("video", 21000, P_FRAME, pts=18000)) == [
        (chunk.VIDEO, 233, b"\x27\x01\xff\xff\xdf" + P_FRAME)
    ]
    changed = avcc(SPS_720P_BASELINE)
    assert [
        body[:2] for _, _, body in muxer.mux(packet("video", 27000, IDR, keyframe=True, config=changed))
    ] == [b"\x17\x00", b"\x17\x01"]


def test_muxer_audio_and_data() -> None:
    muxer = FlvMuxer()
    assert muxer.mux(packet("audio", 0, b"raw")) == []
    assert muxer.mux(packet("audio", 2070, b"raw", config=ASC_LC_44100_STEREO)) == [
        (chunk.AUDIO, 23, b"\xaf\x00" + ASC_LC_44100_STEREO),
        (chunk.AUDIO, 23, b"\xaf\x01raw"),
    ]
    assert muxer.mux(packet("audio", 4140, b"next", config=ASC_LC_44100_STEREO)) == [
        (chunk.AUDIO, 46, b"\xaf\x01next")
    ]
    meta = amf0.encode("onMetaData", {"width": 1.0})
    assert muxer.mux(packet("data", 0, meta)) == [(chunk.DATA_AMF0, 0, flv.SET_DATA_FRAME + meta)]


def test_muxer_rejects_codecs_flv_cannot_carry_here() -> None:
    with pytest.raises(UnsupportedCodec, match="unsupported video codec 'hevc' for FLV"):
        FlvMuxer().mux(MediaPacket("video", "hevc", 0, 0, True, b"", b"x"))


def test_composition_offset_must_fit_24_bits() -> None:
    with pytest.raises(ValueError, match="composition time offset 8388608 ms"):
        flv.video_body(packet("video", 0, b"", pts=0x800000 * 90))


def test_demux_of_mux_gives_back_the_packets() -> None:
    source = [
        packet("video", 0, IDR, pts=3600, keyframe=True, config=avcc()),
        packet("audio", 900, b"aac", config=ASC_LC_44100_STEREO),
        packet("video", 3600, P_FRAME, pts=3600),
        packet("data", 0, amf0.encode("onMetaData", amf0.EcmaArray(a=1.0))),
    ]
    muxer, demuxer = FlvMuxer(), FlvDemuxer()
    result = []
    for p in source:
        for type_id, timestamp, body in muxer.mux(p):
            handler = {chunk.VIDEO: demuxer.on_video, chunk.AUDIO: demuxer.on_audio}.get(
                type_id, demuxer.on_data
            )
            out = handler(timestamp, body)
            if out is not None:
                result.append(out)
    assert [(p.kind, p.dts, p.pts, p.data, p.config, p.keyframe or p.kind == "audio") for p in result] == [
        (p.kind, p.dts, p.pts, p.data, p.config, p.keyframe or p.kind == "audio") for p in source
    ]
