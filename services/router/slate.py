"""The standby picture and silence that keep destinations connected while every input is lost.

``encode_slate`` (blocking, PyAV: run it in a thread) encodes one second of a still card with
libx264 at the program's size and frame rate (one IDR, then P frames that repeat it) and one second of
AAC silence at the program's sample rate and channels, into an in-memory FLV that ``FlvDemuxer`` turns
into canonical packets. ``SlateClock`` (pure) loops those packets with fresh timestamps: every loop
of the video starts at its IDR, audio frames of silence are interchangeable.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import msgspec

from shared.flv import FlvDemuxer, first_sps, parse_audio_specific_config, sps_dimensions
from shared.messages import TIMEBASE, MediaPacket
from shared.rtmp.chunk import AUDIO, VIDEO

SOURCE = "slate"
AAC_FRAME = 1024
_FRAME_RATES = (15, 24, 25, 30, 50, 60)
_CHANNEL_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 8: "7.1"}


@dataclass(frozen=True)
class SlateParams:
    width: int
    height: int
    fps: int
    sample_rate: int = 0  # 0: no audio
    channels: int = 0

    @classmethod
    def of_program(
        cls, video_config: bytes, frame_ticks: int, audio_config: bytes = b""
    ) -> SlateParams | None:
        """What the slate must match, from the program's avcC, frame duration and AudioSpecificConfig."""
        try:
            width, height = sps_dimensions(first_sps(video_config))
        except ValueError:
            return None
        if not width or not height:
            return None
        measured = TIMEBASE / max(1, frame_ticks)  # FLV's millisecond timestamps make this jitter
        fps = min(_FRAME_RATES, key=lambda rate: abs(rate - measured))
        rate = channels = 0
        if audio_config:
            try:
                _, rate, channels = parse_audio_specific_config(audio_config)
            except ValueError:
                rate = channels = 0
            if channels not in _CHANNEL_LAYOUTS:
                rate = channels = 0
        return cls(width, height, fps, rate, channels)


@dataclass(frozen=True)
class SlateMedia:
    params: SlateParams
    video: tuple[MediaPacket, ...]  # one second; the first is the IDR with the avcC
    audio: tuple[MediaPacket, ...]  # AAC frames of silence


def _card(width: int, height: int) -> av.VideoFrame:
    """A grey card with a lighter panel in the middle: clearly a standby picture, not black."""
    frame = av.VideoFrame(width, height, "yuv420p")
    y_plane, u_plane, v_plane = frame.planes
    rows = []
    x0, x1, y0, y1 = width // 4, width * 3 // 4, height // 3, height * 2 // 3
    plain = bytes([80]) * width
    panel = bytes([80]) * x0 + bytes([170]) * (x1 - x0) + bytes([80]) * (width - x1)
    for y in range(height):
        row = panel if y0 <= y < y1 else plain
        rows.append(row + bytes(y_plane.line_size - width))
    y_plane.update(b"".join(rows))
    for plane, value in ((u_plane, 140), (v_plane, 120)):  # a slight blue tint
        plane.update(bytes([value]) * plane.buffer_size)
    return frame


def encode_slate(params: SlateParams) -> SlateMedia:
    buf = io.BytesIO()
    out = av.open(buf, "w", format="flv")
    try:
        video = out.add_stream("libx264", rate=params.fps)
        video.width, video.height, video.pix_fmt = params.width, params.height, "yuv420p"
        gop = str(params.fps)
        video.codec_context.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
        }
        audio = None
        if params.sample_rate:
            audio = out.add_stream("aac", rate=params.sample_rate)
            audio.layout = _CHANNEL_LAYOUTS[params.channels]
        card = _card(params.width, params.height)
        for i in range(params.fps):
            card.pts, card.time_base = i, Fraction(1, params.fps)
            out.mux(video.encode(card))
        out.mux(video.encode(None))
        if audio is not None:
            layout = _CHANNEL_LAYOUTS[params.channels]
            count = params.sample_rate // AAC_FRAME + 3
            for i in range(count):
                silence = av.AudioFrame(format="fltp", layout=layout, samples=AAC_FRAME)
                silence.sample_rate = params.sample_rate
                for plane in silence.planes:
                    plane.update(bytes(plane.buffer_size))
                silence.pts, silence.time_base = i * AAC_FRAME, Fraction(1, params.sample_rate)
                out.mux(audio.encode(silence))
            out.mux(audio.encode(None))
    finally:
        out.close()
    packets = _demux(buf.getvalue())
    frames = tuple(p for p in packets if p.kind == "video")[: params.fps]
    if not frames or not frames[0].keyframe or any(p.keyframe for p in frames[1:]):
        raise RuntimeError("the slate encoder did not produce one IDR per second")
    silence_frames = tuple(p for p in packets if p.kind == "audio")[2:-1]  # past the encoder's priming
    if params.sample_rate and not silence_frames:
        raise RuntimeError("the slate encoder produced no audio")
    return SlateMedia(params, frames, silence_frames)


def _demux(flv: bytes) -> list[MediaPacket]:
    demuxer = FlvDemuxer(SOURCE)
    out: list[MediaPacket] = []
    for type_id, timestamp, body in _tags(flv):
        packet = None
        if type_id == VIDEO:
            packet = demuxer.on_video(timestamp, body)
        elif type_id == AUDIO:
            packet = demuxer.on_audio(timestamp, body)
        if packet is not None:
            out.append(packet)
    return out


def _tags(flv: bytes) -> Iterator[tuple[int, int, bytes]]:
    if flv[:3] != b"FLV":
        raise ValueError("not an FLV file")
    pos = int.from_bytes(flv[5:9], "big") + 4
    while pos + 11 <= len(flv):
        type_id = flv[pos] & 0x1F
        size = int.from_bytes(flv[pos + 1 : pos + 4], "big")
        timestamp = int.from_bytes(flv[pos + 4 : pos + 7], "big") | (flv[pos + 7] << 24)
        yield type_id, timestamp, flv[pos + 11 : pos + 11 + size]
        pos += 11 + size + 4


class SlateClock:
    """The slate's packets due by a given time since it started, with fresh timestamps."""

    def __init__(self, media: SlateMedia) -> None:
        self.media = media
        self._frame_ticks = TIMEBASE / media.params.fps
        self._audio_ticks = AAC_FRAME * TIMEBASE / media.params.sample_rate if media.audio else 0.0
        self._video_n = 0
        self._audio_n = 0

    def _video_dts(self) -> int:
        return round(self._video_n * self._frame_ticks)

    def _audio_dts(self) -> int:
        return round(self._audio_n * self._audio_ticks)

    def due(self, elapsed_s: float) -> list[MediaPacket]:
        """Every packet with a timestamp up to ``elapsed_s``, in DTS order (video first on a tie)."""
        limit = elapsed_s * TIMEBASE
        out: list[MediaPacket] = []
        video, audio = self.media.video, self.media.audio
        while True:
            v_dts = self._video_dts()
            a_dts = self._audio_dts() if audio else None
            if a_dts is not None and a_dts < v_dts and a_dts <= limit:
                template = audio[self._audio_n % len(audio)]
                self._audio_n += 1
                out.append(msgspec.structs.replace(template, dts=a_dts, pts=a_dts))
            elif v_dts <= limit:
                template = video[self._video_n % len(video)]
                self._video_n += 1
                out.append(msgspec.structs.replace(template, dts=v_dts, pts=v_dts))
            else:
                return out

    @property
    def at_keyframe(self) -> bool:
        """The next video packet is the loop's IDR: a program can start on it."""
        return self._video_n % len(self.media.video) == 0

    def next_due_s(self) -> float:
        """When the next packet is due, in seconds since the slate started."""
        times = [self._video_dts()]
        if self.media.audio:
            times.append(self._audio_dts())
        return min(times) / TIMEBASE
