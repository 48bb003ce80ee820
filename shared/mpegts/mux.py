"""MediaPackets -> MPEG-TS: one program with H.264 and AAC, for SRT destinations. Pure.

``TsMuxer.mux(packet)`` returns whole 188-byte packets: PAT and PMT before every video keyframe (and at
least every half second), the access unit as Annex-B with an AUD and, on keyframes, the SPS/PPS from
the avcC; AAC raw frames with an ADTS header. PCR rides on the video PID (the audio PID when there is
no video) a little behind the DTS it accompanies. Timestamps are the program's, plus ``offset``, modulo
2^33. ``Packetizer`` cuts the stream into SRT messages of seven TS packets (1316 bytes), starting a new
message at every keyframe so a destination can join on a message boundary.
"""

from __future__ import annotations

from typing import Final

from shared.messages import MediaPacket

from . import adts, h264, psi

PACKET_SIZE: Final = 188
SYNC_BYTE: Final = 0x47
MESSAGE_PACKETS: Final = 7
MESSAGE_SIZE: Final = PACKET_SIZE * MESSAGE_PACKETS  # 1316
PROGRAM: Final = 1
PMT_PID: Final = 0x1000
VIDEO_PID: Final = 0x0100
AUDIO_PID: Final = 0x0101
VIDEO_STREAM_ID: Final = 0xE0
AUDIO_STREAM_ID: Final = 0xC0
WRAP: Final = 1 << 33
DEFAULT_OFFSET: Final = 90_000  # 1 s: the first PCR, a little before the first DTS, stays positive
PCR_LEAD: Final = 9_000  # PCR runs 100 ms behind the DTS of the frame it rides with
PSI_INTERVAL: Final = 45_000  # PAT/PMT at least every 0.5 s of program time


def _timestamp(marker: int, value: int) -> bytes:
    value %= WRAP
    return bytes(
        (
            (marker << 4) | ((value >> 29) & 0x0E) | 1,
            (value >> 22) & 0xFF,
            ((value >> 14) & 0xFE) | 1,
            (value >> 7) & 0xFF,
            ((value << 1) & 0xFE) | 1,
        )
    )


def pes_packet(stream_id: int, pts: int, dts: int | None, payload: bytes, bounded: bool) -> bytes:
    if dts is not None and dts != pts:
        header = bytes((0x80, 0xC0, 10)) + _timestamp(3, pts) + _timestamp(1, dts)
    else:
        header = bytes((0x80, 0x80, 5)) + _timestamp(2, pts)
    length = len(header) + len(payload)
    if not bounded or length > 0xFFFF:
        length = 0  # unbounded: allowed for video only (a large picture)
    return b"\x00\x00\x01" + bytes((stream_id,)) + length.to_bytes(2, "big") + header + payload


def _pcr_field(pcr: int) -> bytes:
    base = pcr % WRAP
    return bytes(
        (
            (base >> 25) & 0xFF,
            (base >> 17) & 0xFF,
            (base >> 9) & 0xFF,
            (base >> 1) & 0xFF,
            ((base & 1) << 7) | 0x7E,  # reserved bits, extension 0
            0,
        )
    )


class TsMuxer:
    def __init__(self, offset: int = DEFAULT_OFFSET) -> None:
        self.offset = offset
        self._cc: dict[int, int] = {}
        self._video_config = b""
        self._video_ps: bytes = b""  # SPS and PPS in Annex-B, sent before every keyframe
        self._audio_config = b""
        self._has_video = False
        self._has_audio = False
        self._pmt_version = 0
        self._last_psi: int | None = None
        self._last_pcr: int | None = None
        self.skipped = 0  # packets that could not be muxed (no configuration yet, unsupported audio)

    # --- packets ---

    def _next_cc(self, pid: int) -> int:
        cc = (self._cc.get(pid, 15) + 1) & 0x0F
        self._cc[pid] = cc
        return cc

    def _ts_packets(
        self, pid: int, payload: bytes, *, pcr: int | None = None, random_access: bool = False
    ) -> bytes:
        out = bytearray()
        pos, end = 0, len(payload)
        first = True
        while first or pos < end:
            adaptation = b""
            if first and (pcr is not None or random_access):
                flags = (0x40 if random_access else 0) | (0x10 if pcr is not None else 0)
                adaptation = bytes((flags,)) + (_pcr_field(pcr) if pcr is not None else b"")
            room = PACKET_SIZE - 4 - (1 + len(adaptation) if adaptation else 0)
            chunk = payload[pos : pos + room]
            stuffing = room - len(chunk)
            if stuffing > 0:
                if adaptation:
                    adaptation += b"\xff" * stuffing
                elif stuffing > 1:
                    adaptation = b"\x00" + b"\xff" * (stuffing - 2)
                # stuffing == 1: an adaptation field of length 0 is exactly the one byte missing
                has_adaptation = True
            else:
                has_adaptation = bool(adaptation)
            control = 0x30 if has_adaptation else 0x10
            header = bytes(
                (
                    SYNC_BYTE,
                    (0x40 if first else 0) | (pid >> 8),
                    pid & 0xFF,
                    control | self._next_cc(pid),
                )
            )
            field = (bytes((len(adaptation),)) + adaptation) if has_adaptation else b""
            out += header + field + chunk
            pos += len(chunk)
            first = False
        return bytes(out)

    def _psi_packets(self) -> bytes:
        pat = psi.pat_section(PROGRAM, PMT_PID)
        streams = []
        if self._has_video:
            streams.append(psi.ElementaryStream(psi.STREAM_TYPE_H264, VIDEO_PID))
        if self._has_audio:
            streams.append(psi.ElementaryStream(psi.STREAM_TYPE_AAC_ADTS, AUDIO_PID))
        pcr_pid = VIDEO_PID if self._has_video else AUDIO_PID
        pmt = psi.pmt_section(psi.Pmt(PROGRAM, self._pmt_version, pcr_pid, tuple(streams)))
        return self._ts_packets(psi.PAT_PID, b"\x00" + pat) + self._ts_packets(PMT_PID, b"\x00" + pmt)

    def _declare(self, video: bool) -> bool:
        """Add a stream to the PMT; True when the PMT changed (and must go out now)."""
        if video and not self._has_video:
            self._has_video = True
        elif not video and not self._has_audio:
            self._has_audio = True
        else:
            return False
        self._pmt_version = (self._pmt_version + 1) & 0x1F
        return True

    def _pcr(self, dts: int) -> int:
        pcr = dts + self.offset - PCR_LEAD
        if self._last_pcr is not None and pcr < self._last_pcr:
            pcr = self._last_pcr
        self._last_pcr = pcr
        return pcr

    def mux(self, packet: MediaPacket) -> bytes:
        if packet.kind == "video":
            return self._mux_video(packet)
        if packet.kind == "audio":
            return self._mux_audio(packet)
        return b""

    def _mux_video(self, packet: MediaPacket) -> bytes:
        if packet.codec != "h264":
            self.skipped += 1
            return b""
        if packet.keyframe and packet.config and packet.config != self._video_config:
            try:
                sps, pps = h264.avcc_parameter_sets(packet.config)
            except ValueError:
                self.skipped += 1
                return b""
            self._video_config = packet.config
            self._video_ps = h264.to_annexb(sps + pps)
        if not self._video_config:
            self.skipped += 1
            return b""
        try:
            units = h264.split_length_prefixed(packet.data)
        except ValueError:
            self.skipped += 1
            return b""
        changed = self._declare(video=True)
        out = bytearray()
        dts = packet.dts + self.offset
        if packet.keyframe or changed or self._psi_due(dts):
            out += self._psi_packets()
            self._last_psi = dts
        if packet.keyframe:
            units = [u for u in units if u[0] & 0x1F not in (h264.NAL_AUD, h264.NAL_SPS, h264.NAL_PPS)]
            body = h264.AUD + self._video_ps + h264.to_annexb(units)
        else:
            units = [u for u in units if u[0] & 0x1F != h264.NAL_AUD]
            body = h264.AUD + h264.to_annexb(units)
        pes = pes_packet(VIDEO_STREAM_ID, packet.pts + self.offset, dts, body, bounded=True)
        out += self._ts_packets(VIDEO_PID, pes, pcr=self._pcr(packet.dts), random_access=packet.keyframe)
        return bytes(out)

    def _psi_due(self, dts: int) -> bool:
        return self._last_psi is None or not 0 <= dts - self._last_psi < PSI_INTERVAL

    def _mux_audio(self, packet: MediaPacket) -> bytes:
        if packet.codec != "aac":
            self.skipped += 1
            return b""
        config = packet.config or self._audio_config
        try:
            header = adts.adts_header(config, len(packet.data))
        except ValueError:
            self.skipped += 1
            return b""
        self._audio_config = config
        out = bytearray()
        changed = self._declare(video=False)
        dts = packet.dts + self.offset
        if changed or (not self._has_video and self._psi_due(dts)):
            out += self._psi_packets()
            self._last_psi = dts
        pes = pes_packet(AUDIO_STREAM_ID, packet.pts + self.offset, None, header + packet.data, bounded=True)
        pcr = self._pcr(packet.dts) if not self._has_video else None
        out += self._ts_packets(AUDIO_PID, pes, pcr=pcr, random_access=True)
        return bytes(out)


class Packetizer:
    """TS bytes -> SRT messages of up to seven packets; ``push(data, boundary=True)`` starts a new one."""

    def __init__(self, size: int = MESSAGE_SIZE) -> None:
        self.size = size
        self._pending = b""

    def push(self, data: bytes, boundary: bool = False) -> list[bytes]:
        out: list[bytes] = []
        if boundary and self._pending:
            out.append(self._pending)
            self._pending = b""
        buf = self._pending + data if self._pending else data
        whole = len(buf) - len(buf) % self.size
        out.extend(buf[i : i + self.size] for i in range(0, whole, self.size))
        self._pending = buf[whole:]
        return out

    @property
    def pending(self) -> bytes:
        return self._pending

    def flush(self) -> list[bytes]:
        out = [self._pending] if self._pending else []
        self._pending = b""
        return out
