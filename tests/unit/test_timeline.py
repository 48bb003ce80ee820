"""The program timeline: monotonic DTS per track, switches at keyframes, real gaps, re-anchoring."""

from __future__ import annotations

import pytest

from services.router.timeline import ProgramTimeline
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


@pytest.mark.parametrize(
    ("keyframe_arrived", "expected_jump"),
    [
        (0.5, 45_000),  # the cached keyframe came after the old source's last packet: placed at its time
        (-0.4, F),  # it came before: one frame on, the program runs 0.4 s ahead for now
    ],
)
def test_a_cached_keyframe_is_placed_by_when_it_arrived(keyframe_arrived: float, expected_jump: int) -> None:
    tl = ProgramTimeline()
    tl.switch_to("a")
    for i in range(31):
        last = tl.feed(video("a", i * F, key=(i == 0)), i / 30)
    assert last is not None
    tl.switch_to("b")
    out = tl.feed(video("b", 777 * F, key=True), 1.0 + keyframe_arrived)
    assert out is not None and out.dts - last.dts == expected_jump


def test_replays_never_put_the_program_more_than_a_gop_ahead() -> None:
    """The shell's rule: replay a cached GOP only if the lead it leaves is at most one GOP, else wait
    for the new source's next keyframe (which absorbs the lead). Ten back-to-back switches, each with
    a keyframe cached 0.6 s before the old source's last packet, as after a disconnect."""
    gop = 30
    tl = ProgramTimeline()
    tl.switch_to("a")
    t = 0.0
    clock = {"a": 0, "b": 0}
    src = "a"
    leads = []
    for n in range(10):
        for _ in range(2 * gop):
            tl.feed(video(src, clock[src], key=clock[src] % (gop * F) == 0), t)
            clock[src] += F
            t += 1 / 30
        src = "b" if src == "a" else "a"
        tl.switch_to(src)
        clock[src] = (n + 1) * 10_000 * F - 18 * F  # its own clock: 18 frames into a GOP
        if tl.lead_if_started(t - 0.6) <= gop / 30:
            for k in range(18):  # the cached GOP, fed with the times it arrived
                tl.feed(video(src, clock[src] - (18 - k) * F, key=k == 0), t - 0.6 + k / 30)
        last = tl.last_dts
        assert last is not None
        leads.append(last / 90_000 - t)
    assert all(-0.1 <= lead <= 1.0 for lead in leads), leads
    assert max(leads) > 0.5, "replays happened (the backup was warm)"
