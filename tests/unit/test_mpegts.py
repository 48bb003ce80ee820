"""MPEG-TS demuxer and muxer: a real ffmpeg capture, round trips, damage, 33-bit wrap, and fuzzing."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import flv
from shared.messages import MediaPacket
from shared.mpegts import adts, h264, psi
from shared.mpegts.demux import WRAP, TsDemuxer
from shared.mpegts.mux import MESSAGE_SIZE, Packetizer, TsMuxer

GOLDEN = Path(__file__).parent / "golden" / "ffmpeg_h264_aac.ts"
CAPTURE = GOLDEN.read_bytes()
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def demux_all(data: bytes, step: int = 1316) -> tuple[list[MediaPacket], TsDemuxer]:
    demuxer = TsDemuxer("in1")
    out: list[MediaPacket] = []
    for i in range(0, len(data), step):
        out += demuxer.feed(data[i : i + step], recv_ns=i + 1)
    return out + demuxer.flush(), demuxer


def kinds(packets: list[MediaPacket], kind: str) -> list[MediaPacket]:
    return [p for p in packets if p.kind == kind]


# --- the ffmpeg capture: 1 s of 64x48 H.264 (10 fps, GOP 5, B-frames) and 48 kHz mono AAC ---


def test_ffmpeg_capture_becomes_canonical_packets() -> None:
    packets, demuxer = demux_all(CAPTURE)
    video, audio = kinds(packets, "video"), kinds(packets, "audio")
    assert (len(video), len(audio)) == (10, 48)  # what ffprobe counts in the file
    assert not demuxer.errors and not demuxer.unsupported
    assert (demuxer.width, demuxer.height, demuxer.audio_sample_rate) == (64, 48, 48000)
    # ffprobe: first video packet dts 126000 pts 144000 (1.4 s + B-frame delay), keyframes every 5
    assert (video[0].dts, video[0].pts) == (126000, 144000)
    assert [p.keyframe for p in video] == [True, False, False, False, False] * 2
    assert all(p.config == demuxer.video_config for p in video if p.keyframe)
    assert all(p.config == b"" for p in video if not p.keyframe)
    # avcC the FLV path understands: 4-byte lengths, the SPS says 64x48
    assert flv.avcc_nal_length_size(demuxer.video_config) == 4
    assert flv.sps_dimensions(flv.first_sps(demuxer.video_config)) == (64, 48)
    for p in video:
        assert flv.to_four_byte_lengths(p.data, 4) == p.data
        types = {u[0] & 0x1F for u in h264.split_length_prefixed(p.data)}
        assert not types & {h264.NAL_AUD, h264.NAL_SPS, h264.NAL_PPS}
    assert flv.parse_audio_specific_config(audio[0].config) == (2, 48000, 1)
    assert all(p.dts == p.pts and p.keyframe for p in audio)
    # audio frames 1024 samples apart, and every packet remembers when its first byte arrived
    assert [b.dts - a.dts for a, b in itertools.pairwise(audio)] == [1920] * 47
    assert all(p.recv_ns > 0 and p.source == "in1" for p in packets)


@given(st.lists(st.integers(0, len(CAPTURE)), max_size=40))
@FUZZ
def test_any_cut_of_the_stream_gives_the_same_packets(cuts: list[int]) -> None:
    expected, _ = demux_all(CAPTURE, step=len(CAPTURE))
    demuxer = TsDemuxer("in1")
    got: list[MediaPacket] = []
    points = sorted({0, len(CAPTURE), *cuts})
    for a, b in itertools.pairwise(points):
        got += demuxer.feed(CAPTURE[a:b], recv_ns=1)
    got += demuxer.flush()
    assert [(p.kind, p.dts, p.pts, p.data, p.config) for p in got] == [
        (p.kind, p.dts, p.pts, p.data, p.config) for p in expected
    ]


# --- the muxer ---


def mux_all(packets: list[MediaPacket], muxer: TsMuxer | None = None) -> bytes:
    muxer = muxer or TsMuxer()
    return b"".join(muxer.mux(p) for p in packets)


def test_mux_then_demux_gives_back_the_same_packets() -> None:
    packets, _ = demux_all(CAPTURE)
    muxed = mux_all(packets, TsMuxer(offset=0))
    assert len(muxed) % 188 == 0 and all(muxed[i] == 0x47 for i in range(0, len(muxed), 188))
    again, demuxer = demux_all(muxed)
    assert not demuxer.errors
    assert [(p.kind, p.dts, p.pts, p.keyframe, p.data, p.config) for p in again] == [
        (p.kind, p.dts, p.pts, p.keyframe, p.data, p.config) for p in packets
    ]


def test_muxed_stream_is_clean_for_ffmpeg(tmp_path: Path) -> None:
    packets, _ = demux_all(CAPTURE)
    path = tmp_path / "out.ts"
    path.write_bytes(mux_all(packets))
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height,sample_rate",
         "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert set(probe.stdout.split()) == {"h264,64,48", "aac,48000"}  # listed under the program too
    decode = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert decode.returncode == 0 and decode.stderr == ""


def test_timestamps_keep_increasing_across_the_33_bit_wrap() -> None:
    packets, _ = demux_all(CAPTURE)
    start = packets[0].dts
    muxed = mux_all(packets, TsMuxer(offset=WRAP - start - 45_000))  # wraps 0.5 s in
    again, _ = demux_all(muxed)
    video = [p.dts for p in kinds(again, "video")]
    assert video[0] < WRAP < video[-1]
    assert all(b > a for a, b in itertools.pairwise(video))
    assert [p.dts - again[0].dts for p in again] == [p.dts - packets[0].dts for p in packets]


def test_psi_and_keyframes_start_every_gop_and_pcr_leads_the_dts() -> None:
    packets, _ = demux_all(CAPTURE)
    muxer = TsMuxer()
    for p in packets:
        out = muxer.mux(p)
        if p.kind == "video" and p.keyframe:
            pids = [((out[i + 1] & 0x1F) << 8) | out[i + 2] for i in range(0, len(out), 188)]
            assert pids[:2] == [psi.PAT_PID, 0x1000]  # PAT, PMT, then the picture
            first_video = out[2 * 188 :]
            assert first_video[3] & 0x20 and first_video[5] & 0x50 == 0x50  # adaptation: RAI + PCR
            pcr = int.from_bytes(first_video[6:11], "big") >> 7
            assert 0 < (p.dts + muxer.offset) - pcr <= 9000


def test_packetizer_cuts_1316_byte_messages_and_starts_one_at_each_keyframe() -> None:
    packets, _ = demux_all(CAPTURE)
    muxer, cutter = TsMuxer(), Packetizer()
    messages: list[tuple[bytes, bool]] = []
    for p in packets:
        data = muxer.mux(p)
        key = p.kind == "video" and p.keyframe
        for i, m in enumerate(cutter.push(data, boundary=key)):
            messages.append((m, (key and i > 0) or False))
    messages += [(m, False) for m in cutter.flush()]
    assert all(len(m) % 188 == 0 and 0 < len(m) <= MESSAGE_SIZE for m, _ in messages)
    full = b"".join(m for m, _ in messages)
    assert full == mux_all(packets)
    # every keyframe's PAT opens a message
    starts = {i for i, (m, _) in enumerate(messages) if ((m[1] & 0x1F) << 8 | m[2]) == 0 and m[1] & 0x40}
    assert len(starts) >= 2


# --- damage ---


def ts_packets(data: bytes) -> list[bytes]:
    return [data[i : i + 188] for i in range(0, len(data), 188)]


def test_a_lost_ts_packet_drops_its_frame_and_video_resumes_at_the_next_keyframe() -> None:
    packets, _ = demux_all(CAPTURE)
    chunks = ts_packets(mux_all(packets, TsMuxer(offset=0)))
    video_pid = 0x100
    video_idx = [i for i, c in enumerate(chunks) if ((c[1] & 0x1F) << 8 | c[2]) == video_pid]
    lost = video_idx[len(video_idx) // 3]  # inside the first GOP
    again, demuxer = demux_all(b"".join(chunks[:lost] + chunks[lost + 1 :]))
    assert demuxer.errors["continuity"] == 1
    video = kinds(again, "video")
    original = kinds(packets, "video")
    assert len(video) < len(original)

    def same(p: MediaPacket) -> tuple[object, ...]:
        return (p.dts, p.pts, p.keyframe, p.data, p.config)

    assert [same(p) for p in video] == [same(p) for p in original[-len(video) :]]
    assert len(video) == 5  # the damaged GOP is gone, the second one is whole
    assert len(kinds(again, "audio")) == len(kinds(packets, "audio"))


def test_garbage_between_packets_resynchronises() -> None:
    chunks = ts_packets(CAPTURE)
    damaged = b"".join(chunks[:20]) + b"\x47\x00garbage" * 3 + b"".join(chunks[20:])
    again, demuxer = demux_all(damaged)
    assert demuxer.errors["sync"] > 0
    assert len(kinds(again, "video")) >= 5  # the second GOP at least


def test_unsupported_streams_are_named_and_skipped() -> None:
    pmt = psi.pmt_section(
        psi.Pmt(1, 0, 0x100, (psi.ElementaryStream(0x24, 0x100), psi.ElementaryStream(0x03, 0x101)))
    )
    pat = psi.pat_section(1, 0x1000)
    muxer = TsMuxer()
    data = muxer._ts_packets(0, b"\x00" + pat) + muxer._ts_packets(0x1000, b"\x00" + pmt)
    demuxer = TsDemuxer()
    assert demuxer.feed(data) == []
    assert demuxer.unsupported == {"hevc", "mp3"}


# --- the small pieces ---


def test_crc32_mpeg2_check_value() -> None:
    assert psi.crc32_mpeg2(b"123456789") == 0x0376E6E7


def test_pat_and_pmt_round_trip_and_a_bad_crc_is_refused() -> None:
    pmt = psi.Pmt(7, 3, 0x100, (psi.ElementaryStream(0x1B, 0x100), psi.ElementaryStream(0x0F, 0x101)))
    assert psi.parse_pmt(psi.pmt_section(pmt)) == pmt
    assert psi.parse_pat(psi.pat_section(7, 0x1000)) == {7: 0x1000}
    broken = bytearray(psi.pat_section(7, 0x1000))
    broken[-1] ^= 1
    with pytest.raises(ValueError, match="CRC"):
        psi.parse_pat(bytes(broken))


@pytest.mark.parametrize(
    ("data", "units"),
    [
        (b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x65\xaa", [b"\x09\xf0", b"\x65\xaa"]),
        (b"\x00\x00\x01\x67\x42\x00\x00\x00\x00\x01\x68\xce", [b"\x67\x42", b"\x68\xce"]),
        (b"junk\x00\x00\x01\x41\x9a\x00", [b"\x41\x9a\x00"]),  # the last unit keeps its zero
        (b"no start code", []),
        (b"\x00\x00\x01\x00\x00\x01", []),
    ],
)
def test_annexb_split(data: bytes, units: list[bytes]) -> None:
    assert h264.split_annexb(data) == units


def test_avcc_round_trip_with_the_high_profile_fields() -> None:
    sps, pps = h264.avcc_parameter_sets(bytes.fromhex(
        "0164000affe100186764000aacd9447b0110000003001000000303c0f122596001000668ebe3cb22c0"
    ))  # fmt: skip
    record = h264.avcc(sps, pps)
    assert h264.avcc_parameter_sets(record) == (sps, pps)
    assert record[4] == 0xFF and record[-4:] == bytes((0xFD, 0xF8, 0xF8, 0))  # 4:2:0, 8-bit


@pytest.mark.parametrize("config", [bytes.fromhex("1190"), bytes.fromhex("1210"), bytes.fromhex("1408")])
def test_adts_header_round_trip(config: bytes) -> None:
    raw = bytes(range(100))
    frames, skipped = adts.parse_frames(b"\x00junk" + adts.adts_header(config, len(raw)) + raw)
    assert skipped == 5
    assert [(f.raw, f.config) for f in frames] == [(raw, config)]


def test_adts_cannot_carry_explicit_he_aac() -> None:
    with pytest.raises(ValueError):
        adts.adts_header(bytes.fromhex("2b92"), 10)  # object type 5 (SBR)


# --- fuzzing: whatever arrives, the demuxer never raises ---


@st.composite
def mutated_capture(draw: st.DrawFn) -> bytes:
    out = bytearray(CAPTURE[: draw(st.integers(188, len(CAPTURE)))])
    for _ in range(draw(st.integers(1, 12))):
        pos = draw(st.integers(0, len(out) - 1))
        op = draw(st.sampled_from(("set", "insert", "delete")))
        if op == "set":
            out[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=200))
        else:
            del out[pos : pos + draw(st.integers(1, 400))]
        if not out:
            break
    return bytes(out)


def run_demuxer(data: bytes, cuts: list[int]) -> None:
    demuxer = TsDemuxer()
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for a, b in itertools.pairwise(points):
        for p in demuxer.feed(data[a:b]):
            assert p.kind in ("video", "audio")
            if p.kind == "video":
                h264.split_length_prefixed(p.data)  # always well-formed
    demuxer.flush()


@given(st.binary(max_size=5000), st.lists(st.integers(0, 5000), max_size=8))
@FUZZ
def test_fuzz_random_bytes(data: bytes, cuts: list[int]) -> None:
    run_demuxer(data, cuts)


@given(st.lists(st.tuples(st.integers(0, 0x1FFF), st.integers(0, 15), st.binary(max_size=184)), max_size=60))
@FUZZ
def test_fuzz_well_framed_packets_with_random_content(items: list[tuple[int, int, bytes]]) -> None:
    data = b"".join(
        bytes((0x47, 0x40 | (pid >> 8), pid & 0xFF, 0x10 | cc)) + body.ljust(184, b"\xff")
        for pid, cc, body in items
    )
    run_demuxer(CAPTURE[: 188 * 4] + data, [])


@given(mutated_capture(), st.lists(st.integers(0, len(CAPTURE)), max_size=8))
@FUZZ
def test_fuzz_mutated_capture(data: bytes, cuts: list[int]) -> None:
    run_demuxer(data, cuts)


@given(
    st.lists(
        st.tuples(st.sampled_from(("video", "audio", "data")), st.integers(-(2**40), 2**40), st.booleans(),
                  st.binary(max_size=600), st.binary(max_size=40)),
        max_size=30,
    )
)  # fmt: skip
@FUZZ
def test_fuzz_muxer_always_emits_whole_ts_packets(items: list[tuple[str, int, bool, bytes, bytes]]) -> None:
    muxer = TsMuxer()
    for kind, dts, key, data, config in items:
        codec = {"video": "h264", "audio": "aac", "data": "amf0"}[kind]
        out = muxer.mux(MediaPacket(kind, codec, dts, dts, key, data, config))  # type: ignore[arg-type]
        assert len(out) % 188 == 0
        assert all(out[i] == 0x47 for i in range(0, len(out), 188))


@given(mutated_capture())
@FUZZ
def test_runs_of_packets_demux_exactly_as_one_packet_at_a_time(data: bytes) -> None:
    # fed 188 bytes at a time, every run of continuation packets is one packet long: the per-packet
    # path; fed whole, long runs take the fast path. Damage (lost, repeated or garbled packets) must
    # be judged the same either way.
    whole, whole_demuxer = demux_all(data, len(data) or 1)
    single, single_demuxer = demux_all(data, 188)
    # the same packets (only the receive time, the offset of the chunk a frame began in, differs)
    assert [msgspec.structs.replace(p, recv_ns=0) for p in whole] == [
        msgspec.structs.replace(p, recv_ns=0) for p in single
    ]
    # (how often a resync is counted depends on where garbage is cut, so it is left out)
    whole_demuxer.errors.pop("sync", None)
    single_demuxer.errors.pop("sync", None)
    assert whole_demuxer.errors == single_demuxer.errors
