"""The event's MPEG-TS feed for SRT destinations: muxed once, the same messages for all, GOP cache."""

from __future__ import annotations

from pathlib import Path

from services.output.ts_feed import TsFeed
from shared.messages import MediaPacket
from shared.mpegts.demux import TsDemuxer

CAPTURE = (Path(__file__).parent / "golden" / "ffmpeg_h264_aac.ts").read_bytes()


def program() -> list[MediaPacket]:
    demuxer = TsDemuxer("in")
    return demuxer.feed(CAPTURE) + demuxer.flush()


class Receiver:
    def __init__(self) -> None:
        self.started = False
        self.messages: list[bytes] = []
        self.frames = 0

    def send(self, message: bytes) -> None:
        self.messages.append(message)

    def frame_sent(self) -> None:
        self.frames += 1


def pid(message: bytes) -> int:
    return (message[1] & 0x1F) << 8 | message[2]


def test_every_receiver_gets_the_same_message_objects_from_a_keyframe() -> None:
    feed = TsFeed()
    early, late = Receiver(), Receiver()
    feed.attach(early)
    packets = program()
    second_gop = next(i for i, p in enumerate(packets) if p.kind == "video" and p.keyframe and i > 0)
    for i, packet in enumerate(packets):
        if i == second_gop - 3:
            feed.attach(late)  # mid-GOP: it gets the cached GOP at once
        feed.on_packet(packet)
    assert early.messages and all(len(m) % 188 == 0 and len(m) <= 1316 for m in early.messages)
    assert pid(early.messages[0]) == 0 and pid(late.messages[0]) == 0  # both start with a PAT
    # the late one's messages are a tail of the early one's, the very same objects (muxed once)
    tail = early.messages[-len(late.messages) :]
    assert all(a is b for a, b in zip(tail, late.messages, strict=True))
    assert feed.frames == len(packets)
    assert early.frames == len(packets)


def test_a_receiver_attached_before_any_keyframe_waits_for_one() -> None:
    feed = TsFeed()
    packets = [p for p in program() if p.kind == "audio"][:5] + program()
    receiver = Receiver()
    feed.attach(receiver)
    assert not receiver.started
    for packet in packets[:5]:
        feed.on_packet(packet)
    assert receiver.messages == []
    for packet in packets[5:]:
        feed.on_packet(packet)
    assert receiver.started and pid(receiver.messages[0]) == 0


def test_detached_receivers_get_nothing_more() -> None:
    feed = TsFeed()
    receiver = Receiver()
    feed.attach(receiver)
    packets = program()
    for packet in packets[:20]:
        feed.on_packet(packet)
    count = len(receiver.messages)
    feed.detach(receiver)
    for packet in packets[20:]:
        feed.on_packet(packet)
    assert len(receiver.messages) == count > 0


async def test_the_tail_of_the_last_frame_goes_out_when_the_program_pauses() -> None:
    import asyncio

    from services.output import ts_feed

    feed = TsFeed()
    receiver = Receiver()
    feed.attach(receiver)
    for packet in program():
        feed.on_packet(packet)
    assert feed.pending()  # the last frame's end waits for more TS packets
    sent = b"".join(receiver.messages)
    await asyncio.sleep(ts_feed.IDLE_FLUSH_S * 3)
    assert not feed.pending()
    assert b"".join(receiver.messages).startswith(sent) and len(b"".join(receiver.messages)) > len(sent)
