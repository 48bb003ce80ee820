"""What events cost while they wait for their encoders: N events started, no input publishing.

Agencies and schedulers create and start events ahead of air time. This starts the whole stack, measures
each service's CPU with no event, then creates N events with one RTMP input each, starts them, and
measures again. Prints a table and writes it to docs/benchmarks.md. Not a test: figures, not assertions.

    .venv/bin/python bench/idle_events.py --events 100 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.aio.msg import Msg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.doc import write_section  # noqa: E402
from bench.fanout_bench import measure  # noqa: E402
from bench.procstat import stack_pids  # noqa: E402
from shared import subjects  # noqa: E402
from shared.messages import RouterStatus, decode  # noqa: E402
from tests.peers.procs import async_wait_until  # noqa: E402
from tests.peers.stack import Stack, start_stack  # noqa: E402

SERVICES = ("ingest", "router", "output", "orchestrator", "vault", "transcode")


async def _routed(stack: Stack, ids: set[str], timeout: float) -> None:
    """Until the router reports a status for every one of ``ids`` (each waiting: nothing on air)."""
    nc = await nats.connect((stack.data_dir / "nats.url").read_text().strip())
    seen: set[str] = set()

    async def on(msg: Msg) -> None:
        status = decode(msg.data, RouterStatus)
        if status.event_id in ids and not status.live_input:
            seen.add(status.event_id)

    try:
        await nc.subscribe(subjects.ALL_ROUTER_STATUS, cb=on)
        await async_wait_until(lambda: seen >= ids, timeout, f"router statuses of {len(ids)} events")
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    stack = start_stack(Path(tempfile.mkdtemp(prefix="fanout-idle-")) / "stack")
    try:
        time.sleep(3)  # settle after start-up
        before, _ = measure(stack_pids(stack, SERVICES), args.seconds)
        ids = []
        for i in range(args.events):
            ev = stack.create_event(f"waiting-{i}")
            stack.add_input(ev["id"])
            stack.ok("POST", f"/v1/events/{ev['id']}/start")
            ids.append(ev["id"])

        asyncio.run(_routed(stack, set(ids), 60))
        time.sleep(3)  # settle after the burst of creations
        after, _ = measure(stack_pids(stack, SERVICES), args.seconds)
    finally:
        stack.stop()
    rows = [(name, before[name], after[name]) for name in before]
    for name, b, a in rows:
        print(f"{name:13} {b:5.2f}% -> {a:5.2f}%")
    total_b, total_a = sum(before.values()), sum(after.values())
    print(f"{'total':13} {total_b:5.2f}% -> {total_a:5.2f}%")
    command = "python bench/idle_events.py " + " ".join(sys.argv[1:])
    lines = [
        f"## Events waiting for their encoders: {args.events} started, no input publishing",
        "",
        f"Reproduce: `{command.strip()}` ({args.seconds:g} s windows, 2-core machine, the whole stack of `make run`).",
        "CPU % of one core per service: with no event, then with the events created, each with one RTMP",
        "input, and started.",
        "",
        "| service | no event | events waiting | added per waiting event |",
        "|---|---|---|---|",
    ]
    for name, b, a in [*rows, ("total", total_b, total_a)]:
        lines.append(f"| {name} | {b:.2f} | {a:.2f} | {(a - b) / args.events:.3f} |")
    write_section("\n".join(lines) + "\n", Path(args.out))


if __name__ == "__main__":
    main()
