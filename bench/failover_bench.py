"""Failover benchmark: injected primary failures, measured at a real destination (nginx-rtmp).

One event with a primary and a backup ffmpeg publisher (320x240, 30 fps, 2 s GOP, class B-like) and
an nginx-rtmp destination. For each setting a failure is injected on the primary while it is on air:

- ``loss`` (one run per ``--loss-ms``): SIGSTOP, the publisher stays connected and goes silent;
- ``disconnect``: SIGKILL, the connection drops.

Then the primary is restarted and the program returns to it (stable window 3 s) before the next one.
Measured per failure, from the destination's ``bytes_in`` polled every 10 ms: the time with no new
bytes around the switch (from the last byte before the failover activated to the first one after);
and from the FailoverEvent: detection (injection to trigger) and activation (trigger to the first
program packet from the backup). Prints p50/p95 and appends a section to docs/benchmarks.md. Not a
test: figures, not assertions.

    .venv/bin/python bench/failover_bench.py                       # 20 failures per setting
    .venv/bin/python bench/failover_bench.py --failures 5 --loss-ms 1000 --no-write
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.doc import write_section  # noqa: E402
from tests.peers import ffmpeg  # noqa: E402
from tests.peers.nginx_rtmp import NginxRtmp, start_nginx_rtmp  # noqa: E402
from tests.peers.procs import wait_until  # noqa: E402
from tests.peers.stack import Stack, start_stack  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
HEADING = "## Failover: injected primary failures, measured at an nginx-rtmp destination"
STABLE_S = 3.0
GOP = 60
POLL_S = 0.01


@dataclass
class Sample:
    gap_ms: float
    detection_ms: float
    activation_ms: float
    reason: str


@dataclass
class Setting:
    name: str  # "loss 1000 ms" or "disconnect"
    loss_ms: int
    samples: list[Sample] = field(default_factory=list)
    misses: int = 0


class BytesPoller(threading.Thread):
    """When the destination's byte count grew, every 10 ms."""

    def __init__(self, dest: NginxRtmp, stream: str) -> None:
        super().__init__(daemon=True)
        self.dest, self.stream = dest, stream
        self.growth: list[float] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        last = -1
        while not self._stop.is_set():
            try:
                stat = self.dest.stream_stat(self.stream)
            except OSError:
                stat = None
            now = time.time()
            if stat is not None and stat["bytes_in"] != last:
                last = stat["bytes_in"]
                with self._lock:
                    self.growth.append(now)
            time.sleep(POLL_S)  # ok-sleep: polling period of the destination's stat page

    def gap_around(self, at: float) -> float | None:
        """Seconds without growth around ``at`` (the failover's activation)."""
        with self._lock:
            before = [t for t in self.growth if t <= at]
            after = [t for t in self.growth if t > at]
        if not before or not after:
            return None
        return after[0] - before[-1]

    def stop(self) -> None:
        self._stop.set()


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class Bench:
    def __init__(self, stack: Stack, dest: NginxRtmp, workdir: Path) -> None:
        self.stack, self.dest, self.workdir = stack, dest, workdir
        self.procs: dict[str, ffmpeg.FfmpegProcess] = {}
        self.n = 0

    def event(self, loss_ms: int) -> tuple[str, dict[str, Any], dict[str, Any], str]:
        policy = {"loss_timeout_ms": loss_ms, "stable_window_s": STABLE_S}
        ev = self.stack.ok("POST", "/v1/events", {"name": f"bench {loss_ms}", "failover": policy})
        primary = self.stack.add_input(ev["id"], "primary")
        backup = self.stack.add_input(ev["id"], "backup")
        stream = f"fo{loss_ms}-{self.n}"
        self.stack.add_output(ev["id"], self.dest.url("live", stream), stream)
        self.stack.ok("POST", f"/v1/events/{ev['id']}/start")
        return ev["id"], primary, backup, stream

    def publish(self, role: str, inp: dict[str, Any]) -> None:
        self.n += 1
        self.procs[role] = ffmpeg.publish(
            inp["publish_url"], duration=3600, size="320x240", bitrate="300k", gop=GOP,
            tone_hz=440 if role == "primary" else 880, pattern="testsrc2" if role == "primary" else "smptebars",
            log_path=self.workdir / f"{role}-{self.n}.log",
        )  # fmt: skip

    def kill(self, role: str) -> None:
        proc = self.procs.get(role)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT)
            ffmpeg.kill(proc)

    def program(self, event_id: str) -> dict[str, Any]:
        return dict(self.stack.event(event_id)["program"])

    def run(self, setting: Setting, failures: int) -> None:
        event_id, primary, backup, stream = self.event(setting.loss_ms)
        self.publish("primary", primary)
        self.publish("backup", backup)
        poller = BytesPoller(self.dest, stream)
        try:
            wait_until(
                lambda: self.program(event_id)["live_input"] == primary["id"], 30, "the primary on air"
            )
            self.dest.wait_publishing(stream, 20, min_bytes=20_000)
            poller.start()
            time.sleep(2 * GOP / 30)  # ok-sleep: the backup has a GOP cached
            for i in range(failures):
                self._one(setting, poller, event_id, primary, backup, i)
        finally:
            poller.stop()
            for role in ("primary", "backup"):
                self.kill(role)
            self.stack.ok("POST", f"/v1/events/{event_id}/stop")

    def _one(
        self,
        setting: Setting,
        poller: BytesPoller,
        event_id: str,
        primary: dict[str, Any],
        backup: dict[str, Any],
        i: int,
    ) -> None:
        proc = self.procs["primary"]
        injected = time.time()
        if setting.name == "disconnect":
            ffmpeg.kill(proc)
        else:
            os.killpg(proc.pid, signal.SIGSTOP)
        found: list[dict[str, Any]] = []

        def switched() -> bool:
            found[:] = [
                s for s in self.program(event_id)["recent_switches"]
                if s["to"] == backup["id"] and ts(s["triggered_at"]) >= injected
            ]  # fmt: skip
            return bool(found)

        try:
            wait_until(switched, setting.loss_ms / 1000 + 10, "the switch to the backup", interval=0.05)
        except TimeoutError:
            setting.misses += 1
            print(f"  {setting.name} #{i + 1}: no switch", flush=True)
            found = []
        if found:
            switch = found[0]
            time.sleep(0.5)  # ok-sleep: let the poller see the bytes resume
            gap = poller.gap_around(ts(switch["activated_at"]))
            sample = Sample(
                gap_ms=round((gap or 0) * 1000, 1),
                detection_ms=round((ts(switch["triggered_at"]) - injected) * 1000, 1),
                activation_ms=float(switch["activation_ms"]),
                reason=switch["reason"],
            )
            setting.samples.append(sample)
            print(f"  {setting.name} #{i + 1}: {sample}", flush=True)
        self.kill("primary")
        self.publish("primary", primary)
        back_after = time.time()

        def returned() -> bool:
            return any(
                s["to"] == primary["id"] and ts(s["triggered_at"]) >= back_after
                for s in self.program(event_id)["recent_switches"]
            )

        wait_until(returned, STABLE_S + 15, "the program back on the primary", interval=0.1)
        time.sleep(GOP / 30)  # ok-sleep: the backup caches a fresh GOP; the lead of the last replay is paid


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def report(settings: list[Setting], failures: int) -> str:
    lines = [
        HEADING,
        "",
        f"Reproduce: `python bench/failover_bench.py --failures {failures}` (2-core machine shared with other "
        "work; publishers 320x240 30 fps with a 2 s GOP; stable window 3 s; destination bytes polled every 10 ms).",
        "Gap: time with no new bytes at the destination around the switch. Detection: failure injected to "
        "switch decided. Activation: decided to the first program packet from the backup (FailoverEvent).",
        "",
        "| failure | n | gap p50 ms | gap p95 ms | detection p50 ms | detection p95 ms | activation p50 ms "
        "| activation p95 ms | goal: p95 gap |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in settings:
        gaps = [x.gap_ms for x in s.samples]
        det = [x.detection_ms for x in s.samples]
        act = [x.activation_ms for x in s.samples]
        goal = 300 if s.name == "disconnect" else s.loss_ms + 300
        missed = f" ({s.misses} without a switch)" if s.misses else ""
        lines.append(
            f"| {s.name}{missed} | {len(s.samples)} | {pct(gaps, 50):.0f} | {pct(gaps, 95):.0f} | "
            f"{pct(det, 50):.0f} | {pct(det, 95):.0f} | {pct(act, 50):.1f} | {pct(act, 95):.1f} | "
            f"<= {goal} ms: {'met' if pct(gaps, 95) <= goal else 'missed'} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--failures", type=int, default=20)
    parser.add_argument("--loss-ms", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--no-disconnect", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    settings = [Setting(f"loss {ms} ms", ms) for ms in args.loss_ms]
    if not args.no_disconnect:
        settings.append(Setting("disconnect", 2000))
    with tempfile.TemporaryDirectory(prefix="fanout-failover-bench-") as tmp:
        work = Path(tmp)
        stack = start_stack(work / "stack", {"FANOUT_DESTINATION_ALLOWLIST": "127.0.0.0/8"})
        dest = start_nginx_rtmp(work / "nginx", record=False)
        try:
            bench = Bench(stack, dest, work)
            for setting in settings:
                print(f"{setting.name}: {args.failures} failures", flush=True)
                bench.run(setting, args.failures)
        finally:
            dest.stop()
            stack.stop()
    section = report(settings, args.failures)
    print(section)
    if not args.no_write:
        write_section(section, DOC)
        print(f"written to {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
