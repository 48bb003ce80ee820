"""A switch to an input (or the slate) with another codec configuration: the output re-sends the AVC
and AAC sequence headers on the same connection before the first frame that needs them, and a
destination that joins later gets the current ones."""

from __future__ import annotations

from services.output.prepared import Preparer
from services.router.slate import SlateParams, encode_slate
from shared import flv
from shared.messages import MediaPacket
from shared.rtmp import chunk


def frames(config: bytes, asc: bytes, source: str, start: int) -> list[MediaPacket]:
    return [
        MediaPacket("video", "h264", start, start, True, b"\x00\x00\x00\x01\x65", config, source),
        MediaPacket("audio", "aac", start + 10, start + 10, True, b"\x21", asc, source),
        MediaPacket("video", "h264", start + 3000, start + 3000, False, b"\x00\x00\x00\x01\x41", b"", source),
        MediaPacket("audio", "aac", start + 1930, start + 1930, True, b"\x21", asc, source),
    ]


def test_a_new_configuration_is_announced_once_before_its_first_frame() -> None:
    slate = encode_slate(SlateParams(320, 240, 30, 44_100, 2))
    primary_avcc = slate.video[0].config[:-1] + bytes([slate.video[0].config[-1] ^ 1])  # another PPS byte
    primary_asc = bytes.fromhex("1190")  # 48 kHz stereo
    preparer = Preparer()
    sent = []
    for packet in frames(primary_avcc, primary_asc, "in_p", 0):
        sent += preparer.prepare(packet)
    for packet in [*slate.video[:2], *slate.audio[:2]]:  # the switch: the slate's own configs
        sent += preparer.prepare(packet)
    headers = [p for p in sent if p.body[1] == 0]  # AVCPacketType / AACPacketType 0: sequence header
    assert [(p.type_id, p.body[5:] if p.type_id == chunk.VIDEO else p.body[2:]) for p in headers] == [
        (chunk.VIDEO, primary_avcc),
        (chunk.AUDIO, primary_asc),
        (chunk.VIDEO, slate.video[0].config),
        (chunk.AUDIO, slate.audio[0].config),
    ]
    index = sent.index(headers[2])
    assert sent[index + 1].keyframe, "the new AVC header goes right before the new source's keyframe"
    # a destination joining now starts from the current headers
    assert [p.body for p in preparer.headers() if p.type_id != chunk.DATA_AMF0] == [
        flv.avc_sequence_header(slate.video[0].config),
        flv.aac_sequence_header(slate.audio[0].config),
    ]


def test_the_same_configuration_is_not_announced_again() -> None:
    preparer = Preparer()
    avcc = encode_slate(SlateParams(160, 120, 30)).video[0].config
    sent = []
    for source, start in (("in_p", 0), ("in_b", 90_000)):  # two encoders with identical settings
        for packet in frames(avcc, bytes.fromhex("1190"), source, start):
            sent += preparer.prepare(packet)
    assert len([p for p in sent if p.body[1] == 0]) == 2
