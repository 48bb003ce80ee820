"""Program packets serialised once for every RTMP destination of an event.

A ``Prepared`` holds the RTMP message body and its chunked form (fmt-3 continuation headers already
inserted) at the shared chunk size, so a destination only adds its own 12-byte message header with its
own timestamp and writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import flv
from shared.messages import MediaPacket
from shared.rtmp import amf0, chunk

CHUNK_SIZE = 4096
_CSID = {chunk.VIDEO: chunk.CSID_VIDEO, chunk.AUDIO: chunk.CSID_AUDIO, chunk.DATA_AMF0: chunk.CSID_DATA}
_SET_DATA_FRAME = amf0.encode("@setDataFrame")

# One fan-out pass's finished messages for one packet, by (destination timestamp, stream id): the
# destinations that started at the same keyframe share them instead of each building its own copy.
Wire = dict[tuple[int, int], bytes]


@dataclass(slots=True, frozen=True)
class Prepared:
    type_id: int
    timestamp: int  # program milliseconds
    body: bytes
    chunked: bytes
    csid: int
    keyframe: bool  # a video keyframe: a destination may start here
    recv_ns: int = 0

    @classmethod
    def make(
        cls, type_id: int, timestamp: int, body: bytes, keyframe: bool = False, recv_ns: int = 0
    ) -> Prepared:
        csid = _CSID[type_id]
        return cls(
            type_id, timestamp, body, chunk.chunk_body(body, CHUNK_SIZE, csid), csid, keyframe, recv_ns
        )


class Preparer:
    """Turns program packets into Prepared messages, emitting sequence headers when configs change."""

    def __init__(self) -> None:
        self.video_config = b""
        self.audio_config = b""
        self.video_header: Prepared | None = None
        self.audio_header: Prepared | None = None
        self.metadata: Prepared | None = None

    def prepare(self, packet: MediaPacket) -> list[Prepared]:
        ts = packet.dts // 90
        out: list[Prepared] = []
        if packet.kind == "video":
            if packet.keyframe and packet.config and packet.config != self.video_config:
                self.video_config = packet.config
                self.video_header = Prepared.make(chunk.VIDEO, ts, flv.avc_sequence_header(packet.config))
                out.append(self.video_header)
            if not self.video_config:
                return out  # nothing decodable before the first configuration
            out.append(
                Prepared.make(chunk.VIDEO, ts, flv.video_body(packet), packet.keyframe, packet.recv_ns)
            )
        elif packet.kind == "audio":
            if packet.config and packet.config != self.audio_config:
                self.audio_config = packet.config
                self.audio_header = Prepared.make(chunk.AUDIO, ts, flv.aac_sequence_header(packet.config))
                out.append(self.audio_header)
            if not self.audio_config:
                return out
            out.append(Prepared.make(chunk.AUDIO, ts, flv.audio_body(packet), False, packet.recv_ns))
        elif packet.kind == "data":
            self.metadata = Prepared.make(chunk.DATA_AMF0, ts, _SET_DATA_FRAME + packet.data)
            out.append(self.metadata)
        return out

    def headers(self) -> list[Prepared]:
        """What a destination needs before its first frame: metadata and current sequence headers."""
        return [p for p in (self.metadata, self.video_header, self.audio_header) if p is not None]
