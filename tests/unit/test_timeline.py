"""The program timeline: monotonic DTS per track, switches at keyframes, real gaps, re-anchoring."""

from __future__ import annotations

import pytest

from services.router.timeline import MIN_SKIP, ProgramTimeline
from shared.messages import MediaPacket

F = 3000  # one frame at 30 fps in 1/90000


def video(source: str, dts: int, key: bool = False) -> MediaPacket:
    return MediaPacket("video", "h264", dts, dts, key, b"v", b"cfg" if key else b"", source)


def audio(source: str, dts: int) -> MediaPacket:
    return MediaPacket("audio", "aac", dts, dts, True, b"a", b"asc", source)


def test_nothing_goes_out_before_a_source_is_chosen() -> None:
    tl = ProgramTimeline()
    assert tl.feed(video("a", 0, key=True), 0.0) is None


def test_first_source_starts_at_a_keyframe_with_its_own_timestamps() -> None:
    tl = ProgramTimeline()
    tl.switch_to("a")
    assert tl.feed(video("a", 0), 0.0) is None  # not a keyframe
    assert tl.feed(audio("a", 100), 0.0) is None
    out = tl.feed(video("a", F, key=True), 0.0)
    assert out is not None and out.dts == F
    assert tl.feed(audio("a", F + 10), 0.0) is not None


@pytest.mark.parametrize(
    ("gap_s", "expected_jump"),
    [
        (0.0, F),  # planned switch: exactly one frame
        (1.0, 90_000),  # unplanned: the real gap
        (2.5, 225_000),
    ],
)
def test_switch_continues_from_the_last_dts_plus_the_real_gap(gap_s: float, expected_jump: int) -> None:
    tl = ProgramTimeline()
    tl.switch_to("a")
    last = None
    for i in range(10):
        last = tl.feed(video("a", i * F, key=(i == 0)), i / 30)
    assert last is not None
    tl.switch_to("b")
    assert tl.feed(video("b", 5_000_000), 9 / 30 + gap_s) is None  # waits for b's keyframe
    out = tl.feed(video("b", 5_000_000 + F, key=True), 9 / 30 + gap_s)
    assert out is not None
    assert out.dts - last.dts == expected_jump
    assert out.pts == out.dts
    # packets of the old source no longer go out
    assert tl.feed(video("a", 10 * F), 9 / 30 + gap_s) is None


def test_dts_never_goes_back_in_a_track_after_a_switch() -> None:
    tl = ProgramTimeline()
    tl.switch_to("a")
    tl.feed(video("a", 0, key=True), 0.0)
    a = tl.feed(audio("a", 5000), 0.0)
    assert a is not None
    tl.switch_to("b")
    tl.feed(video("b", 900_000, key=True), 0.0)
    # b's audio a little before its keyframe maps to before program audio already sent
    assert tl.feed(audio("b", 900_000 - 4000), 0.0) is None
    later = tl.feed(audio("b", 900_000 + 3000), 0.0)
    assert later is not None and later.dts > a.dts


def test_a_source_clock_reset_is_reanchored_at_its_next_keyframe() -> None:
    tl = ProgramTimeline()
    tl.switch_to("a")
    outs = [tl.feed(video("a", 1_000_000 + i * F, key=(i == 0)), i / 30) for i in range(5)]
    last = outs[-1]
    assert last is not None
    # the publisher reconnects: its timestamps restart from zero
    assert tl.feed(video("a", 0), 5 / 30) is None
    out = tl.feed(video("a", F, key=True), 6 / 30)
    assert out is not None and out.dts > last.dts
    assert out.dts - last.dts <= 2 * F + 1


def test_a_resumed_timeline_continues_after_the_real_gap() -> None:
    before = ProgramTimeline()
    before.switch_to("a")
    for i in range(10):
        before.feed(video("a", i * F, key=(i == 0)), i / 30)
    mark = before.mark()
    assert mark is not None and mark[0] == 9 * F
    after = ProgramTimeline()  # a restarted router
    after.resume(*mark)
    after.switch_to("a")
    out = after.feed(video("a", 40 * F, key=True), 9 / 30 + 2.0)
    assert out is not None and out.dts == 9 * F + 2 * 90_000
    sound = after.feed(audio("a", 40 * F + 100), 9 / 30 + 2.0)
    assert sound is not None and sound.dts == out.dts + 100


def program(source: str, frames: int = 31) -> tuple[ProgramTimeline, MediaPacket]:
    """A timeline that has run ``source`` (video and audio) for ``frames`` frames, 1/30 s apart from t=0."""
    tl = ProgramTimeline()
    tl.switch_to(source)
    last = None
    for i in range(frames):
        last = tl.feed(video(source, i * F, key=(i == 0)), i / 30)
        tl.feed(audio(source, i * F - 10), i / 30)
    assert last is not None
    return tl, last


def gop(
    source: str, start: int, arrived: float, frames: int, audio_every: int = 0
) -> list[tuple[MediaPacket, float]]:
    """A cached GOP: ``frames`` video frames from a keyframe, 1/30 s apart, with audio if asked."""
    out: list[tuple[MediaPacket, float]] = []
    for i in range(frames):
        out.append((video(source, start + i * F, key=(i == 0)), arrived + i / 30))
        if audio_every and i % audio_every == 0:
            out.append((audio(source, start + i * F + 10), arrived + i / 30))
    return out


def test_a_gop_that_arrived_after_the_old_source_stopped_goes_out_as_it_arrived() -> None:
    tl, last = program("a")  # a's last frame at t=1.0
    tl.switch_to("b")
    cached = gop("b", 777 * F, arrived=1.5, frames=10)
    out = tl.replay(cached)
    assert [p.dts - last.dts for p in out] == [45_000 + i * F for i in range(10)]  # the real gap, then 1/30 s
    assert out[0].keyframe and tl.source == "b" and tl.pending is None and tl.lead == 0
    later = tl.feed(video("b", 787 * F), 1.5 + 10 / 30)
    assert later is not None and later.dts == out[-1].dts + F


def test_a_gop_older_than_the_switch_goes_out_from_one_frame_on_and_leads_the_wall_clock() -> None:
    tl, last = program("a")  # a's last frame arrived at t=1.0: a disconnect is seen at once
    tl.switch_to("b")
    cached = gop("b", 777 * F, arrived=0.3, frames=22, audio_every=3)  # keyframe 0.7 s old, newest at 1.0
    assert tl.lead_after_replay(cached) == 63_000 + F
    out = tl.replay(cached)
    videos = [p for p in out if p.kind == "video"]
    assert [p.dts - last.dts for p in videos] == [F + i * F for i in range(22)], "ordinary frame spacing"
    assert tl.lead == 63_000 + F, "0.7 s of the backup's past went out: the program leads by that"
    sounds = [p for p in out if p.kind == "audio"]
    assert sounds and all(p.dts > last.dts for p in sounds)
    nxt = tl.feed(video("b", 799 * F), 1.0 + 1 / 30)
    assert nxt is not None and nxt.dts == videos[-1].dts + F


def test_a_lead_is_absorbed_by_the_next_real_gap() -> None:
    tl, last = program("a")
    tl.switch_to("b")
    out = tl.replay(gop("b", 0, arrived=0.5, frames=16))  # 0.5 s old: lead 0.5 s + a frame
    assert tl.lead == 45_000 + F
    tl.switch_to("a")
    back = tl.feed(video("a", 5_000 * F, key=True), 1.0 + 2.0)  # a returns two seconds later
    assert back is not None and back.dts - out[-1].dts == 2 * 90_000 - (45_000 + F)
    assert tl.lead == 0 and tl.absorbed == 45_000 + F
    assert last.dts < out[0].dts


def test_a_lead_is_paid_back_by_skipping_content_before_the_next_keyframe() -> None:
    tl, _ = program("a")
    assert tl.feed(video("b", -30 * F, key=True), -0.5) is None  # b's keyframes are 1 s apart
    tl.switch_to("b")
    replayed = tl.replay(gop("b", 0, arrived=0.5, frames=16))  # arrived 0.5..1.0
    lead = tl.lead
    assert lead > 45_000
    sent = []
    for i in range(16, 70):  # b live from 1.0 + 1/30, keyframes at frames 30 and 60
        t = 0.5 + i / 30
        out = tl.feed(video("b", i * F, key=i % 30 == 0), t)
        sent.append((i, out))
    skipped = [i for i, out in sent if out is None]
    assert skipped == list(range(30 - len(skipped), 30)), "the frames just before the next keyframe"
    assert F * len(skipped) <= lead <= F * (len(skipped) + 3)
    key = dict(sent)[30]
    before = dict(sent).get(30 - len(skipped) - 1) or replayed[-1]
    assert key is not None and before is not None and key.dts - before.dts == F, "DTS stays continuous"
    assert tl.lead < MIN_SKIP and tl.absorbed == lead - tl.lead
    assert all(out is not None for i, out in sent if i > 30)


def test_ten_disconnects_in_a_row_stay_within_a_gop_of_the_wall_clock() -> None:
    """The shell's rule: replay only if the lead stays within a GOP. Ten switches, each from a GOP
    cached 0.9 s before the old source's last packet, two seconds apart; GOP one second."""
    tl, _ = program("a")
    t = 31 / 30
    clocks = {"a": 31 * F, "b": 0}
    src = "a"
    offsets = []
    for n in range(10):
        src = "b" if src == "a" else "a"
        tl.switch_to(src)
        clocks[src] = (n + 1) * 10_000 * F - 28 * F
        cached = gop(src, clocks[src], arrived=t - 27 / 30 - 0.001, frames=28)
        if tl.lead_after_replay(cached) <= 30 * F:
            tl.replay(cached)
        clocks[src] += 28 * F
        for _ in range(60):
            out = tl.feed(video(src, clocks[src], key=clocks[src] % (30 * F) == 0), t)
            if out is not None:  # where the program is against the wall clock when a frame goes out
                offsets.append(out.dts / 90_000 - t)
            clocks[src] += F
            t += 1 / 30
    # the program started on the wall clock (offset 0): it never runs more than a GOP ahead, never behind
    assert max(offsets) <= 1.0 + 1 / 30 and min(offsets) >= -0.01, (min(offsets), max(offsets))
    assert abs(offsets[-1]) < MIN_SKIP / 90_000, "paid back by the end"
    assert tl.absorbed > 0


def test_replay_needs_the_pending_source_and_a_keyframe_with_config() -> None:
    tl, _ = program("a")
    assert tl.replay(gop("b", 0, 1.0, 3)) == [], "b is not pending"
    tl.switch_to("b")
    assert tl.replay([(video("b", 0), 1.0)]) == [], "not a keyframe"
    assert tl.replay([]) == []
    assert tl.source == "a" and tl.pending == "b"
