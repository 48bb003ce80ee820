"""Destinations that fail alone, measured: 50 healthy RTMP destinations next to 50 that fail and retry.

Two runs in the same script, on the same sink, source and machine: the healthy destinations alone
(baseline), then the same healthy ones next to failing ones: half point at a closed port (refused at
once), half at a TCP proxy that accepts and never forwards (blackholed: each attempt holds a reconnect
slot until the stall limit). Auto-disable is off (``FANOUT_OUTPUT_POLICY=disable_failures=0``) so the
failing ones keep retrying for the whole window, at their class's backoff.

Figures per run: CPU of the output service and of the whole stack, the output service's RSS, the healthy
destinations' delivered-frame ratio (frames each wrote over the window / frames the program carried;
goal 100%), frames they dropped, added latency p50/p99 (ingest receive -> last socket write; goal: no
worse than the baseline), the failing destinations' attempts, and the most reconnects running at once.

    .venv/bin/python bench/destinations_bench.py                  # 5-minute windows
    .venv/bin/python bench/destinations_bench.py --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.doc import write_section  # noqa: E402
from bench.fanout_bench import (  # noqa: E402
    _collect_stats,
    _pct,
    make_source,
    measure,
    publisher,
    wait_sinks,
)
from bench.procstat import rss_mb, stack_pids  # noqa: E402
from tests.peers.nginx_rtmp import NginxRtmp, start_nginx_rtmp  # noqa: E402
from tests.peers.ports import free_port  # noqa: E402
from tests.peers.procs import stop  # noqa: E402
from tests.peers.stack import Stack, start_stack  # noqa: E402
from tests.peers.tcp_proxy import TcpProxy  # noqa: E402

STACK_ENV = {
    "FANOUT_OUTPUT_POLICY": "disable_failures=0",  # keep retrying for the whole window
    "FANOUT_DESTINATION_ALLOWLIST": "127.0.0.0/8",  # every destination here is on loopback
}
SERVICES = ("ingest", "router", "output", "orchestrator")


@dataclass
class Run:
    label: str
    healthy: int
    failing: int
    seconds: float
    cpu: dict[str, float]
    rss_output_start: float
    rss_output_end: float
    delivered_min: float | None
    delivered_mean: float | None
    dropped: int
    p50_ms: float | None
    p99_ms: float | None
    attempts: int
    reconnect_peak: int
    reconnect_cap: int

    @property
    def cpu_stack(self) -> float:
        return sum(self.cpu.values())


async def _collect_outputs(stack: Stack, seconds: float) -> tuple[list[Any], list[Any]]:
    """Every output status and output-worker stats message over the window."""
    import nats

    from shared import subjects
    from shared.messages import OutputStatus, WorkerStats, decode

    nc = await nats.connect((stack.data_dir / "nats.url").read_text().strip())
    statuses: list[Any] = []
    stats: list[Any] = []

    async def on_status(msg: Any) -> None:
        statuses.append(decode(msg.data, OutputStatus))

    async def on_stats(msg: Any) -> None:
        s = decode(msg.data, WorkerStats)
        if s.service == "output":
            stats.append(s)

    await nc.subscribe(subjects.ALL_OUTPUT_STATE, cb=on_status)
    await nc.subscribe(subjects.ALL_WORKER_STATS, cb=on_stats)
    await asyncio.sleep(seconds)  # the measurement window
    await nc.close()
    return statuses, stats


async def _window(
    stack: Stack, seconds: float, pids: dict[str, list[int]]
) -> tuple[dict[str, object], list[Any], list[Any], dict[str, float]]:
    latency, (statuses, stats), (cpu, _mem) = await asyncio.gather(
        _collect_stats(stack, seconds),
        _collect_outputs(stack, seconds),
        asyncio.to_thread(measure, pids, seconds),
    )
    return latency, statuses, stats, cpu


def _nearest(statuses: list[Any], output_id: str, ts: float) -> Any:
    """The output's status from the same status pass as a worker-stats message (published together)."""
    mine = [s for s in statuses if s.output_id == output_id]
    return min(mine, key=lambda s: abs(s.ts - ts)) if mine else None


def run(sink: NginxRtmp, label: str, healthy: int, failing: int, seconds: float, work: Path) -> Run:
    stack = start_stack(work / label, STACK_ENV)
    proxy: TcpProxy | None = None
    pub = None
    try:
        ev = stack.create_event(f"bench-{label}")
        inp = stack.add_input(ev["id"])
        names = [f"{label}-ok{i}" for i in range(healthy)]
        healthy_ids = [stack.add_output(ev["id"], sink.url("sink", n), n)["id"] for n in names]
        failing_ids = []
        if failing:
            proxy = TcpProxy("127.0.0.1", sink.rtmp_port).start()
            proxy.blackhole()
            closed = free_port()
            for i in range(failing):
                port = closed if i % 2 == 0 else proxy.port
                failing_ids.append(
                    stack.add_output(ev["id"], f"rtmp://127.0.0.1:{port}/sink/x{i}", f"x{i}")["id"]
                )
        stack.ok("POST", f"/v1/events/{ev['id']}/start")
        pub = publisher(inp["publish_url"])
        wait_sinks(sink, names, 120)
        time.sleep(5)  # warm-up
        output_pid = stack.child_pid("output") or 0
        pids = stack_pids(stack, SERVICES)
        rss_start = rss_mb(output_pid)
        latency, statuses, stats, cpu = asyncio.run(_window(stack, seconds, pids))
        rss_end = rss_mb(output_pid)
    finally:
        if pub is not None:
            stop(pub)
        stack.stop()
        if proxy is not None:
            proxy.stop()
    first, last = stats[0], stats[-1]
    program = last.program_frames - first.program_frames
    ratios, dropped = [], 0
    for oid in healthy_ids:
        a, b = _nearest(statuses, oid, first.ts), _nearest(statuses, oid, last.ts)
        if a is None or b is None or program <= 0:
            continue
        ratios.append((b.frames_sent - a.frames_sent) / program)
        dropped += b.frames_dropped - a.frames_dropped
    attempts = 0
    for oid in failing_ids:
        a, b = _nearest(statuses, oid, first.ts), _nearest(statuses, oid, last.ts)
        if a is not None and b is not None:
            attempts += b.failures - a.failures
    samples = sorted(latency["latency_us"])  # type: ignore[arg-type]
    return Run(
        label=label,
        healthy=healthy,
        failing=failing,
        seconds=last.ts - first.ts,
        cpu=cpu,
        rss_output_start=rss_start,
        rss_output_end=rss_end,
        delivered_min=min(ratios) if ratios else None,
        delivered_mean=sum(ratios) / len(ratios) if ratios else None,
        dropped=dropped,
        p50_ms=_pct(samples, 50),
        p99_ms=_pct(samples, 99),
        attempts=attempts,
        reconnect_peak=max(s.reconnecting for s in stats),
        reconnect_cap=last.reconnect_cap,
    )


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def render(runs: list[Run], seconds: float, command: str) -> str:
    lines = [
        "## Destinations that fail alone: 50 healthy next to 50 failing and retrying",
        "",
        f"Reproduce: `{command}` ({seconds:g} s windows; 2-core machine shared with other work; one",
        "6 Mbit/s 1080p30 RTMP source to nginx-rtmp sinks). Failing destinations: half refused (closed port),",
        "half blackholed (a proxy that accepts and never forwards); auto-disable off so they retry all along.",
        "Delivered = frames each healthy destination wrote in the window / frames the program carried.",
        "Latency: ingest receive -> last socket write, per packet. CPU: % of one core over the window.",
        "",
        "| run | healthy + failing | CPU output % | CPU stack % | output RSS MB (start -> end) "
        "| healthy delivered (min / mean) | healthy dropped | p50 ms | p99 ms | failing attempts "
        "| reconnects at once (peak / cap) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.label} | {r.healthy} + {r.failing} | {r.cpu.get('output', 0.0):.1f} | {r.cpu_stack:.1f} "
            f"| {r.rss_output_start:.0f} -> {r.rss_output_end:.0f} "
            f"| {_ratio(r.delivered_min)} / {_ratio(r.delivered_mean)} | {r.dropped} "
            f"| {r.p50_ms if r.p50_ms is not None else '-'} | {r.p99_ms if r.p99_ms is not None else '-'} "
            f"| {r.attempts} | {r.reconnect_peak} / {r.reconnect_cap} |"
        )
    base = next((r for r in runs if r.failing == 0), None)
    storm = next((r for r in runs if r.failing > 0), None)
    if base and storm and base.p99_ms and storm.p99_ms:
        lines += [
            "",
            f"With failing destinations / without: p99 added latency {storm.p99_ms / base.p99_ms:.2f}x, "
            f"output CPU {storm.cpu.get('output', 0.0) / max(base.cpu.get('output', 0.0), 0.01):.2f}x "
            f"(goals: delivered 100%, p99 no worse than without).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--healthy", type=int, default=50)
    parser.add_argument("--failing", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    make_source()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="fanout-dest-bench-") as tmp:
        work = Path(tmp)
        sink = start_nginx_rtmp(work / "sink", record=False, applications=("sink",))
        try:
            for label, failing in (("baseline", 0), ("with failing", args.failing)):
                print(
                    f"{label}: {args.healthy} healthy + {failing} failing, {args.seconds:g} s...", flush=True
                )
                r = run(sink, label.replace(" ", "-"), args.healthy, failing, args.seconds, work)
                r.label = label
                runs.append(r)
                print(f"  {r}", flush=True)
        finally:
            sink.stop()
    shown = [a for a in sys.argv[1:] if not a.startswith("--out")]
    if "--out" in sys.argv[1:]:  # "--out PATH": where the figures go is not part of how to get them
        i = sys.argv.index("--out")
        shown = [a for j, a in enumerate(sys.argv[1:], 1) if j not in (i, i + 1)]
    command = "python bench/destinations_bench.py " + " ".join(shown)
    section = render(runs, args.seconds, command.strip())
    print()
    print(section)
    write_section(section, Path(args.out))


if __name__ == "__main__":
    main()
