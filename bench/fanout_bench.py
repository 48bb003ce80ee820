"""Fan-out benchmark: one 6 Mbit/s 1080p30 RTMP stream to N nginx-rtmp sinks that do not record.

Measured in the same run, on the same sinks: Fanout (ingest + router + output + its embedded NATS),
nginx-rtmp `push` to N outputs, and one `ffmpeg -c copy` process per output. Prints a table and
writes it to docs/benchmarks.md. Not a test: figures, not assertions.

    make bench                       # N = 10 50 100, 30 s windows
    .venv/bin/python bench/fanout_bench.py --n 10 50 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.doc import write_section  # noqa: E402
from bench.procstat import children, cpu_seconds, pss_mb, rss_mb, stack_pids  # noqa: E402
from tests.peers.nginx_rtmp import NginxRtmp, start_nginx_rtmp  # noqa: E402
from tests.peers.procs import stop, wait_until  # noqa: E402
from tests.peers.stack import Stack, start_stack  # noqa: E402

SOURCE = ROOT / "bench" / ".cache" / "src-1080p30-6M.flv"


def make_source() -> Path:
    if SOURCE.exists():
        return SOURCE
    SOURCE.parent.mkdir(parents=True, exist_ok=True)
    print("encoding the 1080p30 6 Mbit/s source once (cached in bench/.cache)...", flush=True)
    subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000",
            "-t",
            "30",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-b:v",
            "6M",
            "-maxrate",
            "6M",
            "-bufsize",
            "12M",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-f",
            "flv",
            str(SOURCE),
        ],
        check=True,
    )
    return SOURCE


def publisher(url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            str(SOURCE),
            "-c",
            "copy",
            "-f",
            "flv",
            "-flvflags",
            "no_duration_filesize",
            url,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@dataclass
class Result:
    system: str
    n: int
    cpu_pct: dict[str, float]
    rss_mb: float
    dropped: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def total_cpu_pct(self) -> float:
        return sum(self.cpu_pct.values())

    @property
    def cpu_s_per_output_hour(self) -> float:
        return self.total_cpu_pct / 100 * 3600 / self.n


def measure(pids: dict[str, list[int]], seconds: float) -> tuple[dict[str, float], float]:
    start = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
    t0 = time.monotonic()
    time.sleep(seconds)  # the measurement window
    elapsed = time.monotonic() - t0
    cpu = {name: 100 * (sum(cpu_seconds(p) for p in ps) - start[name]) / elapsed for name, ps in pids.items()}
    mem = sum(rss_mb(p) for ps in pids.values() for p in ps)
    return cpu, mem


def wait_sinks(sink: NginxRtmp, names: list[str], timeout: float) -> None:
    def all_live() -> bool:
        streams = sink.stat().get("sink", {})
        return all(n in streams and streams[n]["publishing"] and streams[n]["bytes_in"] > 0 for n in names)

    wait_until(all_live, timeout, f"{len(names)} sinks to receive", interval=0.5)


def run_fanout(sink: NginxRtmp, n: int, seconds: float, work: Path) -> Result:
    stack: Stack = start_stack(work / f"fanout-{n}")
    pub = None
    try:
        ev = stack.create_event(f"bench-{n}")
        inp = stack.add_input(ev["id"])
        names = [f"f{n}-{i}" for i in range(n)]
        for name in names:
            stack.add_output(ev["id"], sink.url("sink", name), name)
        stack.ok("POST", f"/v1/events/{ev['id']}/start")
        pub = publisher(inp["publish_url"])
        wait_sinks(sink, names, 60)
        time.sleep(5)  # warm-up
        stats = asyncio.run(_collect_stats(stack, seconds))
        services = stack_pids(stack, ("ingest", "router", "output"))
        cpu, mem = measure(services, seconds)
        latency = sorted(stats["latency_us"])
        return Result(
            "fanout",
            n,
            cpu,
            mem,
            dropped=stats["dropped"],
            latency_p50_ms=_pct(latency, 50),
            latency_p99_ms=_pct(latency, 99),
        )
    finally:
        if pub is not None:
            stop(pub)
        stack.stop()


async def _collect_stats(stack: Stack, seconds: float) -> dict[str, object]:
    import nats

    from shared import subjects
    from shared.messages import WorkerStats, decode

    url = (stack.data_dir / "nats.url").read_text().strip()
    nc = await nats.connect(url)
    samples: list[int] = []
    dropped = 0

    async def on(msg: object) -> None:
        nonlocal dropped
        stats = decode(msg.data, WorkerStats)  # type: ignore[attr-defined]
        samples.extend(stats.latency_us)
        dropped = max(dropped, stats.frames_dropped)

    await nc.subscribe(subjects.ALL_WORKER_STATS, cb=on)
    await asyncio.sleep(seconds)
    await nc.close()
    return {"latency_us": samples, "dropped": dropped}


def _pct(values: list[int], p: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * p / 100))] / 1000, 2)


def run_nginx_push(sink: NginxRtmp, n: int, seconds: float, work: Path) -> Result:
    names = [f"p{n}-{i}" for i in range(n)]
    push = "; ".join(f"push rtmp://127.0.0.1:{sink.rtmp_port}/sink/{name}" for name in names)
    relay = start_nginx_rtmp(work / f"push-{n}", record=False, extra_app_directives=push + ";")
    pub = publisher(relay.url("live", "src"))
    try:
        wait_sinks(sink, names, 60)
        time.sleep(5)
        pids = [relay.proc.pid, *children(relay.proc.pid)]
        cpu, mem = measure({"nginx": pids}, seconds)
        return Result("nginx-rtmp push", n, cpu, mem)
    finally:
        stop(pub)
        relay.stop()


def run_ffmpeg_each(sink: NginxRtmp, n: int, seconds: float, work: Path) -> Result:
    relay = start_nginx_rtmp(work / f"ffrelay-{n}", record=False)
    pub = publisher(relay.url("live", "src"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        relay.wait_publishing("src", 30)
        names = [f"x{n}-{i}" for i in range(n)]
        for name in names:
            procs.append(
                subprocess.Popen(
                    [
                        "ffmpeg",
                        "-hide_banner",
                        "-loglevel",
                        "error",
                        "-i",
                        relay.url("live", "src"),
                        "-c",
                        "copy",
                        "-f",
                        "flv",
                        "-flvflags",
                        "no_duration_filesize",
                        sink.url("sink", name),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        wait_sinks(sink, names, 120)
        time.sleep(5)
        cpu, _ = measure({"ffmpeg": [p.pid for p in procs]}, seconds)
        pss = sum(pss_mb(p.pid) for p in procs)
        return Result("ffmpeg -c copy per output", n, cpu, pss, extra={"pss": pss})
    finally:
        for p in procs:
            stop(p, timeout=5)
        stop(pub)
        relay.stop()


def render(results: list[Result], seconds: float, command: str) -> str:
    lines = [
        "## Fan-out: one 6 Mbit/s 1080p30 RTMP stream to N nginx-rtmp sinks",
        "",
        f"Reproduce: `{command}` ({seconds:g} s windows, 2-core machine, all systems in the same run).",
        "Fanout's CPU counts ingest + router + output + the embedded nats-server. Memory: RSS sum",
        "(PSS for the ffmpeg processes, whose shared pages RSS would count N times).",
        "",
        "| system | N | CPU % of a core | CPU-s per output-hour | memory MB | dropped | p50 added ms | p99 added ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        breakdown = ", ".join(f"{k} {v:.1f}" for k, v in r.cpu_pct.items()) if len(r.cpu_pct) > 1 else ""
        cpu = f"{r.total_cpu_pct:.1f}" + (f" ({breakdown})" if breakdown else "")
        lines.append(
            f"| {r.system} | {r.n} | {cpu} | {r.cpu_s_per_output_hour:.1f} | {r.rss_mb:.0f} | "
            f"{r.dropped if r.system == 'fanout' else '-'} | {r.latency_p50_ms if r.latency_p50_ms is not None else '-'} | "
            f"{r.latency_p99_ms if r.latency_p99_ms is not None else '-'} |"
        )
    lines += [
        "",
        "Ratios (Fanout CPU / peer CPU, same N; goals: <= 1.5x nginx-rtmp, <= 0.2x ffmpeg per output):",
        "",
    ]
    by = {(r.system, r.n): r for r in results}
    for n in sorted({r.n for r in results}):
        f = by.get(("fanout", n))
        if f is None:
            continue
        parts = []
        for peer in ("nginx-rtmp push", "ffmpeg -c copy per output"):
            p = by.get((peer, n))
            if p is not None and p.total_cpu_pct > 0:
                parts.append(f"{f.total_cpu_pct / p.total_cpu_pct:.2f}x {peer}")
        lines.append(f"- N={n}: " + ", ".join(parts))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["fanout", "nginx", "ffmpeg"])
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    make_source()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as tmp:
        work = Path(tmp)
        sink = start_nginx_rtmp(work / "sink", record=False, applications=("sink",))
        try:
            for n in args.n:
                for name, fn in (
                    ("fanout", run_fanout),
                    ("nginx", run_nginx_push),
                    ("ffmpeg", run_ffmpeg_each),
                ):
                    if name in args.skip:
                        continue
                    print(f"N={n}: {name}...", flush=True)
                    r = fn(sink, n, args.seconds, work)
                    results.append(r)
                    print(
                        f"  CPU {r.total_cpu_pct:.1f}% {r.cpu_pct}  mem {r.rss_mb:.0f} MB"
                        f"  p50 {r.latency_p50_ms} p99 {r.latency_p99_ms} dropped {r.dropped}",
                        flush=True,
                    )
        finally:
            sink.stop()
    command = "python bench/fanout_bench.py " + " ".join(sys.argv[1:])
    table = render(results, args.seconds, command.strip())
    print()
    print(table)
    write_section(table, Path(args.out))


if __name__ == "__main__":
    main()
