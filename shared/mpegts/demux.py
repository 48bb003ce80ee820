"""MPEG-TS -> MediaPackets: H.264 and AAC of the first program, as RTMP ingest produces them. Pure.

Fed whatever bytes arrive (SRT messages of seven 188-byte packets, or any other cut), ``TsDemuxer``
follows the PAT and PMT, reassembles PES packets, and emits canonical packets: H.264 Annex-B becomes
4-byte length-prefixed NAL units without AUD/SPS/PPS, with an avcC built from the in-band SPS/PPS on
every keyframe; AAC ADTS becomes raw frames with their AudioSpecificConfig. Timestamps stay on the
90 kHz clock and are unwrapped past 2^33 so they only move forward.

Damage is counted, never raised: a sync loss resynchronises on the next 0x47, a continuity gap
discards the PES it broke (and, for video, everything up to the next keyframe, so downstream never
decodes a picture whose references are missing). The shell reads ``errors`` to log and count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from shared.flv import sps_dimensions
from shared.messages import MediaPacket

from . import adts, h264, psi

PACKET_SIZE: Final = 188
SYNC: Final = 0x47
PAYLOAD_SIZE: Final = PACKET_SIZE - 4  # a payload-only packet's payload
WRAP: Final = 1 << 33
HALF_WRAP: Final = 1 << 32
MAX_PES_BYTES: Final = 16 * 1024 * 1024
MAX_SECTION_BYTES: Final = 1024


@dataclass
class _Pes:
    pid: int
    kind: str  # "video" or "audio"
    open: bool = False
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    expected: int = 0  # payload bytes announced by PES_packet_length; 0 when unbounded (video)
    pts: int | None = None
    dts: int | None = None
    corrupt: bool = False
    recv_ns: int = 0


def _timestamp(b: bytes, pos: int) -> int:
    return (
        ((b[pos] >> 1) & 0x07) << 30
        | b[pos + 1] << 22
        | (b[pos + 2] >> 1) << 15
        | b[pos + 3] << 7
        | b[pos + 4] >> 1
    )


class TsDemuxer:
    def __init__(self, source: str = "") -> None:
        self.source = source
        self.errors: Counter[str] = Counter()
        self.unsupported: set[str] = set()  # stream types seen in the PMT and not carried
        self.video_config = b""
        self.audio_config = b""
        self.width = 0
        self.height = 0
        self.audio_sample_rate = 0
        self.channels = 0
        self.dropped_before_config = 0
        self.skipped_to_keyframe = 0
        self._rest = b""
        self._pmt_pid: int | None = None
        self._pmt_version: int | None = None
        self._sections: dict[int, bytearray] = {}
        self._pes: dict[int, _Pes] = {}
        self._cc: dict[int, int] = {}
        self._run_headers: dict[int, tuple[int, list[bytes]]] = {}  # per PID: its byte 1, 16 headers
        self._sps: list[bytes] = []
        self._pps: list[bytes] = []
        self._wait_keyframe = True
        self._last_ts: int | None = None

    # --- input ---

    def feed(self, data: bytes, recv_ns: int = 0) -> list[MediaPacket]:
        buf = self._rest + data if self._rest else data
        out: list[MediaPacket] = []
        pos, end = 0, len(buf)
        streams, counters = self._pes, self._cc
        while pos + PACKET_SIZE <= end:
            if buf[pos] != SYNC:
                self.errors["sync"] += 1
                nxt = buf.find(b"\x47", pos + 1)
                if nxt < 0:
                    pos = end
                    break
                pos = nxt
                continue
            # Fast path, most packets of a stream: a run of payload-only pieces of an open PES, each
            # the next in continuity. Their 4-byte headers differ only in the counter, so a run is
            # recognised by comparing each header with the one expected next (one C call a packet).
            b1, b3 = buf[pos + 1], buf[pos + 3]
            if not b1 & 0xC0 and b3 & 0x30 == 0x10:
                pid = ((b1 & 0x1F) << 8) | buf[pos + 2]
                pes = streams.get(pid)
                cc = b3 & 0x0F
                if pes is not None and pes.open and (counters.get(pid, -2) + 1) & 0x0F == cc:
                    heads = self._run_headers.get(pid)
                    if heads is None or heads[0] != b1:
                        heads = (b1, [bytes((SYNC, b1, buf[pos + 2], 0x10 | i)) for i in range(16)])
                        self._run_headers[pid] = heads
                    table, parts, expected = heads[1], pes.parts, pes.expected
                    parts.append(buf[pos + 4 : pos + PACKET_SIZE])
                    size = pes.size + PAYLOAD_SIZE
                    pos += PACKET_SIZE
                    while (
                        pos + PACKET_SIZE <= end
                        and (not expected or size < expected)
                        and size <= MAX_PES_BYTES
                        and buf.startswith(table[(cc + 1) & 0x0F], pos)
                    ):
                        cc = (cc + 1) & 0x0F
                        parts.append(buf[pos + 4 : pos + PACKET_SIZE])
                        size += PAYLOAD_SIZE
                        pos += PACKET_SIZE
                    counters[pid] = cc
                    pes.size = size
                    self._pes_done(pes, out)  # finishes it if the run completed it
                    continue
            self._packet(buf, pos, out, recv_ns)
            pos += PACKET_SIZE
        self._rest = buf[pos:]
        return out

    def flush(self) -> list[MediaPacket]:
        """The PES packets still open (the last video frame): call when the stream ends."""
        out: list[MediaPacket] = []
        for pes in self._pes.values():
            if pes.open:
                self._finish(pes, out)
        return out

    def _packet(self, buf: bytes, pos: int, out: list[MediaPacket], recv_ns: int) -> None:
        b1 = buf[pos + 1]
        if b1 & 0x80:
            self.errors["transport_error"] += 1
            return
        pid = ((b1 & 0x1F) << 8) | buf[pos + 2]
        if pid == psi.NULL_PID:
            return
        b3 = buf[pos + 3]
        control = (b3 >> 4) & 3
        start = pos + 4
        discontinuity = False
        if control & 2:
            length = buf[start]
            if length > 183:
                self.errors["adaptation_field"] += 1
                return
            if length:
                discontinuity = bool(buf[start + 1] & 0x80)
            start += 1 + length
        if not control & 1:
            return  # adaptation field only: no payload, no continuity step
        cc = b3 & 0x0F
        last = self._cc.get(pid)
        self._cc[pid] = cc
        if last is not None and not discontinuity:
            if cc == last:
                self.errors["duplicate"] += 1
                return
            if cc != (last + 1) & 0x0F:
                self.errors["continuity"] += 1
                self._on_gap(pid)
        payload = buf[start : pos + PACKET_SIZE]
        if not payload:
            return
        unit_start = bool(b1 & 0x40)
        pes = self._pes.get(pid)
        if pes is not None:
            self._pes_payload(pes, unit_start, payload, out, recv_ns)
        elif pid == psi.PAT_PID or pid == self._pmt_pid:
            self._psi(pid, unit_start, payload)

    def _on_gap(self, pid: int) -> None:
        pes = self._pes.get(pid)
        if pes is not None:
            if pes.open:
                pes.corrupt = True
            if pes.kind == "video":
                self._wait_keyframe = True
        self._sections.pop(pid, None)

    # --- PSI ---

    def _psi(self, pid: int, unit_start: bool, payload: bytes) -> None:
        if unit_start:
            pointer = payload[0]
            if 1 + pointer >= len(payload):
                self.errors["psi"] += 1
                return
            section = bytearray(payload[1 + pointer :])
            self._sections[pid] = section
        else:
            pending = self._sections.get(pid)
            if pending is None:
                return
            pending += payload
            section = pending
        if len(section) < 3:
            return
        if section[0] == 0xFF:  # stuffing
            self._sections.pop(pid, None)
            return
        needed = 3 + (((section[1] & 0x0F) << 8) | section[2])
        if needed > MAX_SECTION_BYTES:
            self.errors["psi"] += 1
            self._sections.pop(pid, None)
            return
        if len(section) < needed:
            return
        self._sections.pop(pid, None)
        try:
            if pid == psi.PAT_PID:
                self._on_pat(psi.parse_pat(bytes(section[:needed])))
            else:
                self._on_pmt(psi.parse_pmt(bytes(section[:needed])))
        except ValueError:
            self.errors["psi"] += 1

    def _on_pat(self, programs: dict[int, int]) -> None:
        if not programs:
            return
        pmt_pid = programs[min(programs)]
        if pmt_pid != self._pmt_pid:
            if pmt_pid == psi.PAT_PID or pmt_pid in self._pes:
                self.errors["psi"] += 1
                return
            self._pmt_pid = pmt_pid
            self._pmt_version = None

    def _on_pmt(self, pmt: psi.Pmt) -> None:
        if pmt.version == self._pmt_version and self._pes:
            return
        self._pmt_version = pmt.version
        wanted: dict[int, str] = {}
        for es in pmt.streams:
            if es.pid in (psi.PAT_PID, self._pmt_pid, psi.NULL_PID):
                continue
            if es.stream_type == psi.STREAM_TYPE_H264 and "video" not in wanted.values():
                wanted[es.pid] = "video"
            elif es.stream_type == psi.STREAM_TYPE_AAC_ADTS and "audio" not in wanted.values():
                wanted[es.pid] = "audio"
            else:
                self.unsupported.add(
                    psi.STREAM_TYPE_NAMES.get(es.stream_type, f"stream type 0x{es.stream_type:02x}")
                )
        for pid in list(self._pes):
            if wanted.get(pid) != self._pes[pid].kind:
                del self._pes[pid]
        for pid, kind in wanted.items():
            if pid not in self._pes:
                self._pes[pid] = _Pes(pid, kind)

    # --- PES ---

    def _pes_payload(
        self, pes: _Pes, unit_start: bool, payload: bytes, out: list[MediaPacket], recv_ns: int
    ) -> None:
        if unit_start:
            if pes.open:
                self._finish(pes, out)
            if len(payload) < 9 or payload[0] != 0 or payload[1] != 0 or payload[2] != 1:
                self.errors["pes_header"] += 1
                return
            packet_length = (payload[4] << 8) | payload[5]
            flags = payload[7]
            header_length = payload[8]
            data_start = 9 + header_length
            if data_start > len(payload):
                self.errors["pes_header"] += 1
                return
            pts = dts = None
            if flags & 0x80:
                if header_length < 5:
                    self.errors["pes_header"] += 1
                    return
                pts = _timestamp(payload, 9)
                if flags & 0x40 and header_length >= 10:
                    dts = _timestamp(payload, 14)
            pes.open = True
            pes.corrupt = False
            pes.pts, pes.dts = pts, dts
            pes.expected = packet_length - 3 - header_length if packet_length else 0
            if pes.expected < 0:
                pes.expected = 0
            first = payload[data_start:]
            pes.parts = [first]
            pes.size = len(first)
            pes.recv_ns = recv_ns
        else:
            if not pes.open:
                return
            pes.parts.append(payload)
            pes.size += len(payload)
        self._pes_done(pes, out)

    def _pes_done(self, pes: _Pes, out: list[MediaPacket]) -> None:
        """Finish a PES whose announced length has arrived; give up on one grown past any picture."""
        if pes.expected and pes.size >= pes.expected:
            self._finish(pes, out)
        elif pes.size > MAX_PES_BYTES:
            self.errors["pes_too_large"] += 1
            pes.open = False
            pes.parts = []

    def _finish(self, pes: _Pes, out: list[MediaPacket]) -> None:
        pes.open = False
        data = b"".join(pes.parts)
        pes.parts = []
        if pes.expected:
            data = data[: pes.expected]
        if pes.corrupt:
            self.errors["damaged_" + pes.kind] += 1
            return
        if pes.pts is None:
            self.errors["no_pts"] += 1
            return
        pts = self._unwrap(pes.pts)
        dts = self._unwrap(pes.dts) if pes.dts is not None else pts
        if pes.kind == "video":
            self._video(data, dts, pts, pes.recv_ns, out)
        else:
            self._audio(data, pts, pes.recv_ns, out)

    def _unwrap(self, ts: int) -> int:
        """The 33-bit ``ts`` as the value nearest the last one seen, on a clock that never wraps."""
        last = self._last_ts
        if last is None:
            self._last_ts = ts
            return ts
        delta = (ts - last) % WRAP
        if delta >= HALF_WRAP:
            delta -= WRAP
        value = last + delta
        self._last_ts = value
        return value

    def _video(self, data: bytes, dts: int, pts: int, recv_ns: int, out: list[MediaPacket]) -> None:
        kept: list[bytes] = []
        sps: list[bytes] = []
        pps: list[bytes] = []
        keyframe = False
        for unit in h264.split_annexb(data):
            kind = unit[0] & 0x1F
            if kind == h264.NAL_SPS:
                sps.append(unit)
            elif kind == h264.NAL_PPS:
                pps.append(unit)
            elif kind in (h264.NAL_AUD, h264.NAL_FILLER):
                continue
            else:
                kept.append(unit)
                keyframe = keyframe or kind == h264.NAL_IDR
        if sps or pps:
            self._set_parameter_sets(sps, pps)
        if not kept:
            return
        if not self.video_config:
            self.dropped_before_config += 1
            return
        if self._wait_keyframe:
            if not keyframe:
                self.skipped_to_keyframe += 1
                return
            self._wait_keyframe = False
        out.append(
            MediaPacket(
                kind="video",
                codec="h264",
                dts=dts,
                pts=pts,
                keyframe=keyframe,
                data=h264.length_prefixed(kept),
                config=self.video_config if keyframe else b"",
                source=self.source,
                recv_ns=recv_ns,
            )
        )

    def _set_parameter_sets(self, sps: list[bytes], pps: list[bytes]) -> None:
        new_sps = sps or self._sps
        new_pps = pps or self._pps
        if not new_sps or not new_pps:
            self._sps, self._pps = new_sps, new_pps
            return
        try:
            config = h264.avcc(new_sps, new_pps)
        except ValueError:
            self.errors["parameter_sets"] += 1
            return
        self._sps, self._pps = new_sps, new_pps
        if config != self.video_config:
            self.video_config = config
            self.width, self.height = sps_dimensions(new_sps[0])

    def _audio(self, data: bytes, pts: int, recv_ns: int, out: list[MediaPacket]) -> None:
        frames, skipped = adts.parse_frames(data)
        if skipped:
            self.errors["adts"] += 1
        for index, frame in enumerate(frames):
            ts = pts + index * adts.SAMPLES_PER_FRAME * 90_000 // frame.sample_rate
            if frame.config != self.audio_config:
                self.audio_config = frame.config
                self.audio_sample_rate = frame.sample_rate
                self.channels = frame.channels
            out.append(
                MediaPacket(
                    kind="audio",
                    codec="aac",
                    dts=ts,
                    pts=ts,
                    keyframe=True,
                    data=frame.raw,
                    config=frame.config,
                    source=self.source,
                    recv_ns=recv_ns,
                )
            )
