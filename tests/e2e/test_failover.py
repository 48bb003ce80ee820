"""Primary/backup failover end to end: two ffmpeg publishers that can be told apart (testsrc2 + 440 Hz
on the primary, smptebars + 880 Hz on the backup, 320x240, one-second GOP), one event, an nginx-rtmp
destination recording the program. Every scenario runs under one recording that must stay one:
the destination never reconnects, DTS is strictly increasing in both tracks, nothing fails to decode.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import failover_judge as fj
from tests.peers import ffmpeg, judge
from tests.peers.nginx_rtmp import NginxRtmp
from tests.peers.procs import wait_until
from tests.peers.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

GOP_S = 1.0
FRAME_S = 1 / 30
LOSS_S = 1.0
WINDOW_S = 3.0
HOLD_S = 2.0
POLICY = {"loss_timeout_ms": int(LOSS_S * 1000), "stable_window_s": WINDOW_S}


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class Show:
    """One event with a primary and a backup publisher and a recording destination."""

    def __init__(self, stack: Stack, dest: NginxRtmp, tmp: Path, policy: dict[str, Any]) -> None:
        self.stack, self.dest, self.tmp = stack, dest, tmp
        ev = stack.ok("POST", "/v1/events", {"name": "failover", "failover": policy})
        self.event_id = ev["id"]
        self.primary = stack.add_input(self.event_id, "primary")
        self.backup = stack.add_input(self.event_id, "backup")
        self.output = stack.add_output(self.event_id, dest.url("live", "program"), "program")
        stack.ok("POST", f"/v1/events/{self.event_id}/start")
        self.procs: dict[str, ffmpeg.FfmpegProcess] = {}
        self.started: dict[str, float] = {}
        self.switches: dict[tuple[str, str], dict[str, Any]] = {}
        self._n = 0

    @property
    def ids(self) -> dict[str, str]:
        return {"primary": self.primary["id"], "backup": self.backup["id"]}

    def publish(self, role: str, extra_filter: str = "") -> None:
        inp = self.primary if role == "primary" else self.backup
        pattern, tone = ("testsrc2", fj.PRIMARY_TONE) if role == "primary" else ("smptebars", fj.BACKUP_TONE)
        args = ffmpeg.publish_args(
            inp["publish_url"], duration=900, size="320x240", bitrate="300k", gop=int(GOP_S * 30),
            tone_hz=tone, pattern=pattern,
        )  # fmt: skip
        if extra_filter:
            source = args.index(f"{pattern}=size=320x240:rate=30")
            args[source] += "," + extra_filter
        self._n += 1
        self.procs[role] = ffmpeg.FfmpegProcess(args, self.tmp / f"{role}-{self._n}.log")
        self.started[role] = time.time()

    def kill(self, role: str, sig: int = signal.SIGKILL) -> float:
        proc = self.procs[role]
        at = time.time()
        if sig == signal.SIGKILL:
            ffmpeg.kill(proc)
        else:
            os.killpg(proc.pid, sig)
        return at

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGCONT)
                ffmpeg.kill(proc)

    def program(self) -> dict[str, Any]:
        program = dict(self.stack.event(self.event_id)["program"])
        for s in program["recent_switches"]:
            self.switches[(s["triggered_at"], s["to"])] = s
        return program

    def wait_live(self, role: str, timeout: float = 20) -> None:
        want = self.ids.get(role, role)
        wait_until(lambda: self.program()["live_input"] == want, timeout, f"{role} on air", interval=0.1)

    def wait_switch(
        self, to: str, after: float, timeout: float = 20, reason: str | None = None
    ) -> dict[str, Any]:
        want = self.ids.get(to, to)
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            self.program()
            found[:] = [
                s for s in self.switches.values()
                if s["to"] == want and ts(s["triggered_at"]) >= after and reason in (None, s["reason"])
            ]  # fmt: skip
            return bool(found)

        wait_until(seen, timeout, f"a switch to {to} ({reason or 'any reason'})", interval=0.1)
        return min(found, key=lambda s: ts(s["triggered_at"]))

    def switches_between(self, start: float, end: float) -> list[dict[str, Any]]:
        self.program()
        return sorted(
            (s for s in self.switches.values() if start <= ts(s["triggered_at"]) <= end),
            key=lambda s: ts(s["triggered_at"]),
        )

    def wait_healthy(self, role: str, timeout: float = 20) -> None:
        """Connected and a keyframe cached: the input can take over at once."""
        self.stack.wait_input_connected(self.event_id, self.ids[role], timeout)
        wait_until(lambda: time.time() - self.started[role] > 1.5 * GOP_S, timeout, "a GOP cached")

    def recording(self) -> Path:
        return self.dest.recordings("program")[-1]

    def finish(self) -> tuple[Path, list[fj.Frame], list[fj.Run], list[fj.Run]]:
        """Stop the event; the destination must have one recording, made over one connection."""
        out = self.stack.output_of(self.event_id, self.output["id"])
        assert out["connects"] == 1, f"the destination reconnected: {out}"
        self.stack.ok("POST", f"/v1/events/{self.event_id}/stop")
        rec = self.dest.wait_recording_closed("program", 30)
        assert len(self.dest.recordings("program")) == 1, self.dest.recordings("program")
        judge.assert_valid_recording(rec)  # DTS strictly increasing per track, no decode errors
        frames = fj.video_frames(rec)
        return rec, frames, fj.video_runs(frames), fj.audio_runs(fj.audio_windows(rec))


def switch_frames(
    frames: list[fj.Frame], before: str, after: str, near: float = 0.0
) -> tuple[fj.Frame, fj.Frame]:
    """The last frame of ``before`` and the first of ``after`` where the picture changes, the first
    such change at or after ``near`` seconds of the recording."""
    for a, b in itertools.pairwise(frames):
        if b.dts >= near and a.label == before and b.label == after:
            return a, b
    raise AssertionError(f"no {before} -> {after} cut after {near:.1f}s in the recording")


def test_failover_keeps_one_recording_through_kill_stall_return_flap_lock_and_slate(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    show = Show(stack, destination(), tmp_path, POLICY)
    try:
        show.publish("primary")
        show.publish("backup")
        show.wait_live("primary")
        show.dest.wait_publishing("program", 20, min_bytes=50_000)
        show.wait_healthy("backup")

        # 1. SIGKILL the primary: the disconnect switches at once to the backup
        killed = show.kill("primary")
        to_backup = show.wait_switch("backup", killed, reason="disconnect")
        real_gap_bound = ts(to_backup["activated_at"]) - killed

        # 2. the primary comes back: the program returns only after the stable window, planned
        show.publish("primary")
        back = show.wait_switch("primary", show.started["primary"], reason="return")
        assert back["planned"] is True
        assert ts(back["triggered_at"]) - show.started["primary"] >= WINDOW_S
        time.sleep(HOLD_S)  # ok-sleep: the primary on air for a while, so the recording shows it

        # an operator's switch: planned (at the backup's next keyframe); the primary preference brings
        # the program back once the stable window has passed since that switch
        manual_at = time.time()
        status, body = stack.call(
            "POST", f"/v1/events/{show.event_id}/switch", {"input_id": show.ids["backup"]}
        )
        assert status == 202, body
        manual = show.wait_switch("backup", manual_at, reason="manual")
        assert manual["planned"] is True
        again = show.wait_switch("primary", manual_at, reason="return")
        assert ts(again["triggered_at"]) - ts(manual["triggered_at"]) >= WINDOW_S
        time.sleep(HOLD_S)  # ok-sleep: the primary on air for a while, so the recording shows it

        # 3. SIGSTOP the primary (connected, silent): the switch waits for the loss timeout
        show.wait_healthy("backup")
        stopped = show.kill("primary", signal.SIGSTOP)
        stall = show.wait_switch("backup", stopped, reason="loss")
        assert ts(stall["triggered_at"]) - stopped >= LOSS_S - 0.05
        show.kill("primary")

        # 4. a flapping primary (1 s on, 1 s off): at most one switch per stable window
        show.publish("primary")
        show.wait_switch("primary", show.started["primary"], reason="return")
        time.sleep(HOLD_S)  # ok-sleep: the primary on air for a while, so the recording shows it
        flap_start = time.time()
        for _ in range(4):
            show.kill("primary")
            time.sleep(1.0)  # ok-sleep: the primary stays off for a second
            show.publish("primary")
            time.sleep(1.0)  # ok-sleep: and on for a second
        flap_end = time.time()
        flapping = show.switches_between(flap_start, flap_end)
        assert flapping, "the first loss of the primary must switch"
        triggers = [ts(s["triggered_at"]) for s in flapping]
        assert all(b - a >= WINDOW_S for a, b in itertools.pairwise(triggers)), flapping
        assert not [s for s in flapping if s["reason"] == "return"], (
            "never back to a primary that is not stable"
        )

        # 5. lock to the backup (the router restarted meanwhile keeps the lock), kill the backup: the
        #    slate, never the primary; unlock: the primary
        locked = stack.ok("POST", f"/v1/events/{show.event_id}/lock", {"input_id": show.ids["backup"]})
        assert locked["program"]["mode"] == "locked"
        refused = stack.call("POST", f"/v1/events/{show.event_id}/switch", {"input_id": show.ids["primary"]})
        assert refused[0] == 409 and "locked" in refused[1]["error"]["message"], refused
        show.wait_healthy("primary")
        old_router = stack.kill_service("router")
        wait_until(lambda: stack.child_pid("router") not in (None, old_router), 20, "the router to restart")
        wait_until(lambda: "router.resumed" in stack.log_text(), 20, "the new router to resume the program")
        resumed_bytes = show.dest.wait_publishing("program", 5)["bytes_in"]
        show.dest.wait_publishing("program", 20, min_bytes=resumed_bytes + 20_000)  # on air again
        show.wait_live("backup")
        assert show.program()["mode"] == "locked"
        backup_killed = show.kill("backup")
        show.wait_live("slate")
        time.sleep(WINDOW_S + LOSS_S)  # ok-sleep: long enough for any automatic switch to have happened
        unlocked_at = time.time()
        assert not [
            s for s in show.switches_between(backup_killed, unlocked_at) if s["to"] == show.ids["primary"]
        ]
        stack.ok("POST", f"/v1/events/{show.event_id}/unlock")
        show.wait_switch("primary", unlocked_at)
        time.sleep(HOLD_S)  # ok-sleep: the primary on air for a while, so the recording shows it

        # 6. both inputs lost for 30 s: the destination stays connected on the slate, then the backup
        show.kill("primary")
        show.wait_live("slate")
        slate_from = time.time()
        bytes_before = show.dest.wait_publishing("program", 5)["bytes_in"]
        wait_until(lambda: time.time() - slate_from >= 30, 35, "30 s on the slate", interval=0.5)
        assert show.dest.wait_publishing("program", 5)["bytes_in"] > bytes_before, "the slate keeps flowing"
        show.publish("backup")
        show.wait_switch("backup", slate_from, reason="return")
        show.dest.wait_publishing("program", 10, min_bytes=bytes_before + 50_000)
        time.sleep(HOLD_S)  # ok-sleep: record a little of the backup after the slate
        rec, frames, video, audio = show.finish()
    finally:
        show.stop_all()

    # the recording tells the story, picture and sound
    story = ["primary", "backup", "primary", "backup", "primary", "backup", "primary", "backup"]
    story += ["slate", "primary", "slate", "backup"]  # fmt: skip
    assert [r.label for r in video] == story, video
    assert video[-2].length >= 29.0, video
    tones = {"primary": "440", "backup": "880", "slate": "silence"}
    assert [r.label for r in audio] == [tones[label] for label in story], audio
    # 1. the kill: the tone changes 440 -> 880 where the picture cuts, and DTS jumps at most the real gap
    last_p, first_b = switch_frames(frames, "primary", "backup")
    assert first_b.keyframe
    assert first_b.dts - last_p.dts <= real_gap_bound + FRAME_S + 0.002
    assert abs(audio[1].start - first_b.dts) <= 0.3, (audio[:2], first_b)
    # 2. the return: at a keyframe, with no DTS jump larger than two frames
    last_b, first_p = switch_frames(frames, "backup", "primary", near=first_b.dts)
    assert first_p.keyframe
    assert first_p.dts - last_b.dts <= 2 * FRAME_S + 0.002
    assert judge.probe_packets(rec)["video"].dts_strictly_increasing


def test_ten_failovers_stay_on_the_wall_clock_and_a_black_primary_switches(
    stack: Stack, destination: Callable[..., NginxRtmp], tmp_path: Path
) -> None:
    show = Show(stack, destination(), tmp_path, {**POLICY, "black_s": 2})
    try:
        show.publish("primary")
        show.publish("backup")
        show.wait_live("primary")
        show.dest.wait_publishing("program", 20, min_bytes=50_000)
        show.wait_healthy("backup")
        time.sleep(1)  # ok-sleep: let the recording settle before the wall-clock reference
        t0, d0 = time.time(), fj.last_video_timestamp(show.recording())
        drift: list[float] = []
        live = "primary"
        for n in range(10):
            other = "backup" if live == "primary" else "primary"
            show.wait_healthy(other)
            killed = show.kill(live)
            show.wait_switch(other, killed, reason="disconnect")
            # the primary that comes back last turns black eight seconds after it starts
            show.publish(
                live, "drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='gte(t,8)'" if n == 8 else ""
            )
            time.sleep(0.3)  # ok-sleep: let the destination receive past the switch before measuring
            drift.append((fj.last_video_timestamp(show.recording()) - d0) - (time.time() - t0))
            live = other
        assert live == "primary"
        # the destination's timeline stays within one GOP of the wall clock: no drift, failover after
        # failover (0.1 s allows for the probe: the file and the clock are read a moment apart)
        assert all(abs(d) <= GOP_S + 0.1 for d in drift), drift
        black = show.wait_switch("backup", show.started["primary"], timeout=30, reason="black")
        assert ts(black["triggered_at"]) >= show.started["primary"] + 8 + 2 - 0.2
        time.sleep(1)  # ok-sleep: record a little of the backup after the black switch
        _rec, _frames, video, _audio = show.finish()
    finally:
        show.stop_all()
    labels = [r.label for r in video]
    assert labels[-2:] == ["black", "backup"], video
    assert [r for r in video if r.label == "black"][-1].length >= 2.0 - 0.2
