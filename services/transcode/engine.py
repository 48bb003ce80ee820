"""The encode core of one event: decode the program once, scale once per resolution, encode once per profile.

Synchronous and blocking (PyAV): the service runs it in a worker thread. Program packets go in as
``MediaPacket``s (length-prefixed H.264 with avcC on keyframes, raw AAC with its ASC); each profile's
rendition comes out as ``MediaPacket``s of the same canonical form, so an output cannot tell a rendition
from a program. Timestamps stay on the program's 1/90000 clock: the video encoder is fed the decoded
frames with their program PTS, so a rendition's DTS follows the program's (through switches too, the
program being monotonic already). Keyframes are deterministic: keyint = min-keyint = fps * interval,
no scene cuts, and the frame grid is the profile's fps (frames between grid slots are dropped).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import av.audio.resampler

from shared.messages import TIMEBASE, MediaPacket
from shared.mpegts import h264

from . import profiles
from .profiles import Profile

log = logging.getLogger(__name__)

_TB = Fraction(1, TIMEBASE)
_DROP_NALS = frozenset((h264.NAL_SPS, h264.NAL_PPS, h264.NAL_AUD))


def _annexb_to_canonical(data: bytes) -> tuple[bytes, bytes]:
    """(length-prefixed access unit without parameter sets, avcC when the unit carried SPS and PPS)."""
    units = h264.split_annexb(data)
    sps = [u for u in units if h264.nal_type(u) == h264.NAL_SPS]
    pps = [u for u in units if h264.nal_type(u) == h264.NAL_PPS]
    config = h264.avcc(sps, pps) if sps and pps else b""
    return h264.length_prefixed([u for u in units if h264.nal_type(u) not in _DROP_NALS]), config


@dataclass
class _Video:
    profile: Profile
    ctx: av.video.codeccontext.VideoCodecContext
    config: bytes = b""
    next_slot: int | None = None  # program PTS of the next frame on the profile's grid
    next_key: int | None = None  # program PTS from which the next frame is forced to be a keyframe
    frames: int = 0
    keyframes: int = 0


@dataclass
class _Audio:
    profile: Profile
    ctx: av.audio.codeccontext.AudioCodecContext
    resampler: av.audio.resampler.AudioResampler
    base: int | None = None  # program PTS of encoded sample 0
    samples: int = 0  # samples fed to the encoder since base


@dataclass
class Counters:
    decoded_video: int = 0
    decoded_audio: int = 0
    decode_errors: int = 0
    encoded: dict[str, int] = field(default_factory=dict)


class EventTranscoder:
    """Every encoding profile of one event. ``feed`` returns the packets of each rendition."""

    def __init__(self, wanted: tuple[Profile, ...] = ()) -> None:
        self._video: dict[str, _Video] = {}
        self._audio: dict[str, _Audio] = {}
        self._profiles: dict[str, Profile] = {}
        self._vdec: av.video.codeccontext.VideoCodecContext | None = None
        self._vdec_config = b""
        self._adec: av.audio.codeccontext.AudioCodecContext | None = None
        self._adec_config = b""
        self.counters = Counters()
        self.set_profiles(wanted)

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(self._profiles)

    def set_profiles(self, wanted: tuple[Profile, ...]) -> None:
        """Start encoders for new profiles (at the next keyframe), stop those no longer wanted."""
        by_name = {p.name: p for p in wanted if p.name != profiles.PASSTHROUGH}
        for name in list(self._profiles):
            if name not in by_name or by_name[name] != self._profiles[name]:
                del self._profiles[name]
                self._video.pop(name, None)
                self._audio.pop(name, None)
        for name, p in by_name.items():
            self._profiles.setdefault(name, p)

    def running_profiles(self) -> tuple[str, ...]:
        """Profiles whose encoder is open (from the first program keyframe after they were wanted)."""
        return tuple(self._video)

    # --- input ---

    def feed(self, packet: MediaPacket) -> list[tuple[str, MediaPacket]]:
        if not self._profiles:
            return []
        if packet.kind == "video" and packet.codec == "h264":
            return self._feed_video(packet)
        if packet.kind == "audio" and packet.codec == "aac":
            return self._feed_audio(packet)
        if packet.kind == "data":
            return []  # onMetaData describes the program, not the rendition
        return []

    def _feed_video(self, packet: MediaPacket) -> list[tuple[str, MediaPacket]]:
        if packet.keyframe and packet.config and packet.config != self._vdec_config:
            self._vdec = av.CodecContext.create("h264", "r")
            assert self._vdec is not None
            self._vdec.extradata = packet.config
            self._vdec_config = packet.config
        if self._vdec is None:
            return []
        av_packet = av.Packet(packet.data)
        av_packet.pts, av_packet.dts, av_packet.time_base = packet.pts, packet.dts, _TB
        try:
            frames = self._vdec.decode(av_packet)
        except av.FFmpegError as exc:
            self.counters.decode_errors += 1
            log.warning("transcode.decode_error", extra={"error": str(exc)})
            return []
        out: list[tuple[str, MediaPacket]] = []
        for frame in frames:
            self.counters.decoded_video += 1
            out += self._encode_video(frame)
        return out

    def _encode_video(self, frame: av.VideoFrame) -> list[tuple[str, MediaPacket]]:
        if frame.pts is None:
            return []
        scaled: dict[tuple[int, int], av.VideoFrame] = {}  # one scale per resolution
        out: list[tuple[str, MediaPacket]] = []
        for name, p in self._profiles.items():
            enc = self._video.get(name)
            if enc is None:
                if not frame.key_frame:
                    continue  # start a rendition on a program keyframe
                enc = self._video[name] = _Video(p, self._open_video(p))
            step = TIMEBASE // p.fps
            if enc.next_slot is not None and frame.pts < enc.next_slot - step // 2:
                continue  # faster source: keep the profile's frame grid
            enc.next_slot = max(frame.pts, (enc.next_slot or frame.pts)) + step
            picture = scaled.get((p.width, p.height))
            if picture is None:
                picture = frame.reformat(width=p.width, height=p.height, format="yuv420p")
                picture.pts, picture.time_base = frame.pts, _TB
                scaled[(p.width, p.height)] = picture
            # keyframes by program time, on a grid anchored at the first: every interval exactly, whatever
            # the source's frame rate or a dropped frame (keyint in frames is only the ceiling)
            interval = round(p.keyframe_interval_s * TIMEBASE)
            key = enc.next_key is None or frame.pts >= enc.next_key - step // 2
            if key:
                enc.next_key = (enc.next_key or frame.pts) + interval
                while enc.next_key <= frame.pts + step // 2:
                    enc.next_key += interval
            picture.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
            for pkt in enc.ctx.encode(picture):
                out += self._video_packet(name, enc, pkt)
        return out

    def _open_video(self, p: Profile) -> av.video.codeccontext.VideoCodecContext:
        ctx = av.CodecContext.create("libx264", "w")
        assert isinstance(ctx, av.video.codeccontext.VideoCodecContext)
        ctx.width, ctx.height, ctx.pix_fmt = p.width, p.height, "yuv420p"
        ctx.time_base = _TB
        ctx.framerate = Fraction(p.fps, 1)
        ctx.bit_rate = p.video_bitrate_kbps * 1000
        ctx.options = {
            "preset": p.preset,
            "profile": p.h264_profile,
            "x264-params": profiles.x264_params(p) + ":repeat-headers=1:aud=0",
            "forced-idr": "1",
        }
        ctx.open()
        return ctx

    def _video_packet(self, name: str, enc: _Video, pkt: av.Packet[Any]) -> list[tuple[str, MediaPacket]]:
        if pkt.pts is None or pkt.dts is None:
            return []
        data, config = _annexb_to_canonical(bytes(pkt))
        if config:
            enc.config = config
        if not enc.config or not data:
            return []
        enc.frames += 1
        enc.keyframes += int(pkt.is_keyframe)
        self.counters.encoded[name] = self.counters.encoded.get(name, 0) + 1
        return [
            (
                name,
                MediaPacket(
                    "video",
                    "h264",
                    int(pkt.dts),
                    int(pkt.pts),
                    bool(pkt.is_keyframe),
                    data,
                    enc.config if pkt.is_keyframe else b"",
                    source=name,
                ),
            )
        ]

    def _feed_audio(self, packet: MediaPacket) -> list[tuple[str, MediaPacket]]:
        if packet.config and packet.config != self._adec_config:
            self._adec = av.CodecContext.create("aac", "r")
            assert self._adec is not None
            self._adec.extradata = packet.config
            self._adec_config = packet.config
        if self._adec is None:
            return []
        av_packet = av.Packet(packet.data)
        av_packet.pts, av_packet.time_base = packet.pts, _TB
        try:
            frames = self._adec.decode(av_packet)
        except av.FFmpegError as exc:
            self.counters.decode_errors += 1
            log.warning("transcode.audio_decode_error", extra={"error": str(exc)})
            return []
        out: list[tuple[str, MediaPacket]] = []
        for frame in frames:
            self.counters.decoded_audio += 1
            out += self._encode_audio(frame, packet.pts)
        return out

    def _encode_audio(self, frame: av.AudioFrame, program_pts: int) -> list[tuple[str, MediaPacket]]:
        out: list[tuple[str, MediaPacket]] = []
        for name, p in self._profiles.items():
            if name not in self._video:
                continue  # audio starts with the rendition's first video keyframe
            enc = self._audio.get(name)
            if enc is None:
                enc = self._audio[name] = self._open_audio(p)
            expected = None if enc.base is None else enc.base + enc.samples * TIMEBASE // p.sample_rate
            if expected is None or abs(program_pts - expected) > TIMEBASE // 5:
                enc.base, enc.samples = program_pts, 0  # a gap in the program's audio: re-anchor
            frame.pts = None
            for chunk in enc.resampler.resample(frame):
                chunk.pts = enc.samples
                chunk.time_base = Fraction(1, p.sample_rate)
                enc.samples += chunk.samples
                for pkt in enc.ctx.encode(chunk):
                    out += self._audio_packet(name, enc, pkt)
        return out

    def _open_audio(self, p: Profile) -> _Audio:
        ctx = av.CodecContext.create("aac", "w")
        assert isinstance(ctx, av.audio.codeccontext.AudioCodecContext)
        layout = "stereo" if p.channels == 2 else "mono"
        ctx.sample_rate, ctx.layout, ctx.format = p.sample_rate, layout, "fltp"
        ctx.bit_rate = p.audio_bitrate_kbps * 1000
        ctx.time_base = Fraction(1, p.sample_rate)
        ctx.open()
        resampler = av.audio.resampler.AudioResampler(
            format="fltp", layout=layout, rate=p.sample_rate, frame_size=ctx.frame_size or 1024
        )
        return _Audio(p, ctx, resampler)

    def _audio_packet(self, name: str, enc: _Audio, pkt: av.Packet[Any]) -> list[tuple[str, MediaPacket]]:
        if pkt.pts is None or enc.base is None or pkt.pts < 0:
            return []  # the encoder's priming frame before sample 0
        ts = enc.base + int(pkt.pts) * TIMEBASE // enc.profile.sample_rate
        config = bytes(enc.ctx.extradata or b"")
        if not config:
            return []
        return [(name, MediaPacket("audio", "aac", ts, ts, False, bytes(pkt), config, source=name))]
