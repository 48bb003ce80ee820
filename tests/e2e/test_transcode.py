"""Profiles end to end: ffmpeg -> ingest -> router -> transcode -> output -> nginx-rtmp recordings.

The issue's 1080p30 case runs once (the last test); the others use 720p and smaller inputs and a tenant's
small profiles so they stay quick on a two-core machine shared with other tests.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest

from shared import subjects
from shared.messages import WorkerStats
from tests.peers import ffmpeg, judge
from tests.peers.bus_tap import BusTap
from tests.peers.nginx_rtmp import NginxRtmp
from tests.peers.procs import wait_until
from tests.peers.stack import Stack

pytestmark = pytest.mark.e2e

PROFILE = {
    "name": "test-360p",
    "width": 640,
    "height": 360,
    "fps": 30,
    "video_bitrate_kbps": 1000,
    "keyframe_interval_s": 2.0,
    "preset": "veryfast",
    "audio_bitrate_kbps": 96,
}


def video_packets(path: Path) -> list[tuple[float, int, bool]]:
    """(pts seconds, size bytes, keyframe) of every video packet."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,size,flags",
         "-of", "json", str(path)],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return [
        (float(p["pts_time"]), int(p["size"]), "K" in p.get("flags", ""))
        for p in json.loads(done.stdout).get("packets", [])
        if p.get("pts_time") not in (None, "N/A")
    ]


def frame_sizes(path: Path) -> list[tuple[int, int]]:
    """Decoded picture sizes in order, runs collapsed: what a viewer saw."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=width,height",
         "-of", "csv=p=0", str(path)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    runs: list[tuple[int, int]] = []
    for line in done.stdout.split():
        w, h = (int(x) for x in line.split(",")[:2])
        if not runs or runs[-1] != (w, h):
            runs.append((w, h))
    return runs


def bitrate_kbps(packets: list[tuple[float, int, bool]], start: float, seconds: float) -> float:
    inside = [size for pts, size, _ in packets if start <= pts < start + seconds]
    return sum(inside) * 8 / seconds / 1000


def test_profiles_encode_once_and_change_live(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    dest = destination()
    stack.ok("POST", "/v1/profiles", PROFILE)
    ev = stack.create_event("profiles")
    inp = stack.add_input(ev["id"])
    plain = stack.add_output(ev["id"], dest.url("live", "plain"), "plain")
    coded = [
        stack.ok("POST", f"/v1/events/{ev['id']}/outputs", {"name": n, "url": dest.url("live", n), "profile": "test-360p"})
        for n in ("enc1", "enc2")
    ]  # fmt: skip
    assert [o["profile"] for o in coded] == ["test-360p", "test-360p"] and plain["profile"] == "passthrough"
    with BusTap((stack.data_dir / "nats.url").read_text().strip()) as tap:
        tap.subscribe(subjects.ALL_WORKER_STATS, WorkerStats)
        stack.ok("POST", f"/v1/events/{ev['id']}/start")
        for out in (plain, *coded):
            stack.wait_output_state(ev["id"], out["id"], "live")
        pub = ffmpeg.publish(
            inp["publish_url"],
            duration=26,
            size="1280x720",
            bitrate="2500k",
            gop=60,
            log_path=tmp_path / "pub.log",
        )
        try:
            stack.wait_input_connected(ev["id"], inp["id"])
            key = f"encoder.{ev['id']}.test-360p"

            def one_encoder() -> bool:
                stats = tap.received(WorkerStats, lambda s: s.service == "transcode")
                return (
                    bool(stats) and stats[-1].counters.get(key) == 1 and stats[-1].counters["encoders"] == 1
                )

            wait_until(one_encoder, 20, "one encoder for the two outputs on test-360p")
            dest.wait_publishing("enc2", 20)

            def metered() -> bool:  # what the destination measured of what it wrote
                seen = stack.output_of(ev["id"], coded[0]["id"])
                return (
                    seen["sent_keyframe_interval_s"] == 2.0 and 700_000 < seen["sent_bitrate_bps"] < 1_500_000
                )

            wait_until(metered, 20, "enc1's sent bitrate and keyframe interval in its status")
            assert stack.output_of(ev["id"], plain["id"])["sent_keyframe_interval_s"] == 2.0
            wait_until(
                lambda: stack.output_of(ev["id"], coded[1]["id"])["bytes_sent"] > 500_000, 30, "enc2 sent"
            )
            # enc2 moves to passthrough while live: new sequence headers on the same connection
            moved = stack.ok("PATCH", f"/v1/outputs/{coded[1]['id']}", {"profile": "passthrough"})
            assert moved["profile"] == "passthrough"
            ffmpeg.wait_exit(pub, 60)
        finally:
            ffmpeg.stop(pub)
        stats = tap.received(WorkerStats, lambda s: s.service == "transcode")
        assert max(s.counters.get("encoders", 0) for s in stats) == 1, "never two encoders for one profile"
        assert all(s.counters.get("decode_errors", 0) == 0 for s in stats)
    for out in (plain, *coded):
        seen = stack.output_of(ev["id"], out["id"])
        assert seen["connects"] == 1, seen  # the profile change did not reconnect
    assert stack.output_of(ev["id"], coded[0]["id"])["profile"] == "test-360p"
    stack.ok("POST", f"/v1/events/{ev['id']}/stop")
    recs = {name: dest.wait_recording_closed(name, 20) for name in ("plain", "enc1", "enc2")}
    for rec in recs.values():
        judge.assert_valid_recording(rec, min_duration=12)
    assert judge.probe_packets(recs["plain"])["video"].height == 720
    enc1 = video_packets(recs["enc1"])
    assert frame_sizes(recs["enc1"]) == [(640, 360)]
    keyframes = [pts for pts, _, key in enc1 if key]
    assert len(keyframes) >= 8
    gaps = {round(b - a, 3) for a, b in pairwise(keyframes)}
    assert gaps == {2.0}, f"keyframes every 2 s exactly: {keyframes}"
    start = keyframes[1]
    rate = bitrate_kbps(enc1, start, 10.0)
    assert abs(rate - PROFILE["video_bitrate_kbps"]) <= 0.15 * PROFILE["video_bitrate_kbps"], rate  # type: ignore[operator]
    assert frame_sizes(recs["enc2"]) == [(640, 360), (1280, 720)], "the profile change is in the recording"


def test_rollback_on_and_off_while_live(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    """Rollback moves the class A and B outputs to rollback-720p30 on their connections and stops class C;
    turning it off puts back passthrough and restarts C. The input is 640x360 to keep the machine real time."""
    dest = destination()
    ev = stack.create_event("rollback")
    inp = stack.add_input(ev["id"])
    outs = {c: stack.add_output(ev["id"], dest.url("live", f"rb{c}"), f"rb{c}", c) for c in "ABC"}
    stack.ok("POST", f"/v1/events/{ev['id']}/start")
    for out in outs.values():
        stack.wait_output_state(ev["id"], out["id"], "live")
    pub = ffmpeg.publish(
        inp["publish_url"], duration=30, size="640x360", bitrate="800k", log_path=tmp_path / "pub.log"
    )
    try:
        stack.wait_input_connected(ev["id"], inp["id"])
        dest.wait_publishing("rbA", 20, min_bytes=200_000)
        view = stack.ok("POST", f"/v1/events/{ev['id']}/rollback", {"min_priority": 2})
        assert view["program"]["locked_input"] == inp["id"], "locked to the live input"
        stack.wait_output_state(ev["id"], outs["C"]["id"], "stopped")

        def on_rollback(c: str) -> bool:
            seen = stack.output_of(ev["id"], outs[c]["id"])
            return seen["profile"] == "rollback-720p30" and seen["state"] == "live"

        wait_until(lambda: on_rollback("A") and on_rollback("B"), 20, "A and B live on rollback-720p30")
        wait_until(lambda: dest.is_publishing("rbA") and not dest.is_publishing("rbC"), 20, "C stopped")
        wait_until(
            lambda: stack.output_of(ev["id"], outs["A"]["id"])["sent_bitrate_bps"] > 2_000_000,
            20,
            "rollback rate",
        )
        view = stack.ok("DELETE", f"/v1/events/{ev['id']}/rollback")
        assert view["program"]["locked_input"] is None and view["rollback"] is None
        stack.wait_output_state(ev["id"], outs["C"]["id"], "live")
        wait_until(lambda: dest.is_publishing("rbC"), 20, "C back")
        wait_until(
            lambda: stack.output_of(ev["id"], outs["A"]["id"])["sent_bitrate_bps"] < 1_500_000,
            20,
            "back to passthrough",
        )
        ffmpeg.wait_exit(pub, 60)
    finally:
        ffmpeg.stop(pub)
    for c in "AB":
        assert stack.output_of(ev["id"], outs[c]["id"])["connects"] == 1, "moved on the same connection"
    stack.ok("POST", f"/v1/events/{ev['id']}/stop")
    for c in "AB":
        rec = dest.wait_recording_closed(f"rb{c}", 20)
        judge.assert_valid_recording(rec, min_duration=20)
        assert frame_sizes(rec) == [(640, 360), (1280, 720), (640, 360)], "passthrough, rollback, passthrough"
    recs = dest.recordings("rbC")
    assert len(recs) == 2, recs  # stopped during rollback, a new stream after it
    for rec in recs:
        judge.assert_valid_recording(rec)
        assert frame_sizes(rec) == [(640, 360)]


def test_a_failover_during_transcoding_keeps_one_encoded_recording(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    dest = destination()
    stack.ok(
        "POST",
        "/v1/profiles",
        {**PROFILE, "name": "test-180p", "width": 320, "height": 180, "video_bitrate_kbps": 300},
    )
    ev = stack.create_event("transcode failover")
    primary, backup = stack.add_input(ev["id"]), stack.add_input(ev["id"], "backup")
    out = stack.ok(
        "POST",
        f"/v1/events/{ev['id']}/outputs",
        {"name": "enc", "url": dest.url("live", "fo"), "profile": "test-180p"},
    )
    stack.ok("POST", f"/v1/events/{ev['id']}/start")
    stack.wait_output_state(ev["id"], out["id"], "live")
    pubs = [
        ffmpeg.publish(i["publish_url"], duration=40, size="320x240", bitrate="300k", pattern=p, log_path=tmp_path / f"{p}.log")
        for i, p in ((primary, "testsrc2"), (backup, "smptebars"))
    ]  # fmt: skip
    try:
        stack.wait_input_connected(ev["id"], primary["id"])
        stack.wait_input_connected(ev["id"], backup["id"])
        dest.wait_publishing("fo", 20, min_bytes=100_000)
        wait_until(
            lambda: stack.event(ev["id"])["program"]["live_input"] == primary["id"], 20, "primary on air"
        )
        ffmpeg.kill(pubs[0])
        wait_until(lambda: stack.event(ev["id"])["program"]["live_input"] == backup["id"], 20, "failover")
        sent = stack.output_of(ev["id"], out["id"])["bytes_sent"]
        wait_until(
            lambda: stack.output_of(ev["id"], out["id"])["bytes_sent"] > sent + 300_000, 30, "encoded backup"
        )
    finally:
        for pub in pubs:
            ffmpeg.stop(pub)
    seen = stack.output_of(ev["id"], out["id"])
    assert seen["connects"] == 1 and seen["profile"] == "test-180p", seen
    stack.ok("POST", f"/v1/events/{ev['id']}/stop")
    rec = dest.wait_recording_closed("fo", 20)
    assert len(dest.recordings("fo")) == 1, "one file through the failover"
    judge.assert_valid_recording(rec, min_duration=8)
    assert frame_sizes(rec) == [(320, 180)]


def test_1080p_input_to_passthrough_social_and_rollback_profiles(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    """The issue's case: a 1080p30 6 Mbit/s input, outputs on passthrough, social-720p30, rollback-720p30."""
    dest = destination()
    ev = stack.create_event("1080p")
    inp = stack.add_input(ev["id"])
    names = {"pass": "passthrough", "social": "social-720p30", "rollback": "rollback-720p30"}
    outs = {
        n: stack.ok("POST", f"/v1/events/{ev['id']}/outputs", {"name": n, "url": dest.url("live", n), "profile": p})
        for n, p in names.items()
    }  # fmt: skip
    stack.ok("POST", f"/v1/events/{ev['id']}/start")
    for out in outs.values():
        stack.wait_output_state(ev["id"], out["id"], "live")
    pub = ffmpeg.publish(
        inp["publish_url"], duration=18, size="1920x1080", bitrate="6M", gop=60, log_path=tmp_path / "pub.log"
    )
    try:
        stack.wait_input_connected(ev["id"], inp["id"])
        ffmpeg.wait_exit(pub, 60)
    finally:
        ffmpeg.stop(pub)
    stack.ok("POST", f"/v1/events/{ev['id']}/stop")
    recs = {n: dest.wait_recording_closed(n, 20) for n in names}
    for rec in recs.values():
        judge.assert_valid_recording(rec, min_duration=14)
    assert judge.probe_packets(recs["pass"])["video"].height == 1080
    for n in ("social", "rollback"):
        packets = video_packets(recs[n])
        assert frame_sizes(recs[n]) == [(1280, 720)]
        keyframes = [pts for pts, _, key in packets if key]
        assert {round(b - a, 3) for a, b in pairwise(keyframes)} == {2.0}, keyframes
        rate = bitrate_kbps(packets, keyframes[1], 10.0)
        assert abs(rate - 3000) <= 0.15 * 3000, (n, rate)
