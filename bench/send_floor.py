"""The floor under any Python fan-out: what the sends alone cost, measured next to nginx-rtmp `push`.

One process publishes the fan-out benchmark's source (6 Mbit/s 1080p30) to N nginx-rtmp sinks with the
least work a Python sender can do: every FLV tag is chunked once, then a plain loop calls the blocking
`socket.sendall` of each sink's connection with the same bytes. No NATS, no ingest, no router, no event loop,
no per-destination header, no drop check. Whatever this costs, a real Python output costs more; nginx-rtmp
`push` to the same sinks, in the same run, is the yardstick the walking skeleton's goal is set against.
Also measured in the same run: Fanout with no destination (the cost that does not depend on N) and one
bare NATS hop (a nats-py process that only re-publishes what it receives, and its nats-server).

    .venv/bin/python bench/send_floor.py --n 10 50 100 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.doc import write_section  # noqa: E402
from bench.fanout_bench import SOURCE, make_source, measure, publisher, run_nginx_push, wait_sinks  # noqa: E402
from bench.procstat import cpu_seconds, stack_pids  # noqa: E402
from shared.rtmp.client_session import ClientSession, Published  # noqa: E402
from tests.peers.nats_server import start_nats  # noqa: E402
from tests.peers.nginx_rtmp import NginxRtmp, start_nginx_rtmp  # noqa: E402
from tests.peers.procs import stop, wait_until  # noqa: E402
from tests.peers.stack import start_stack  # noqa: E402

FLV_HEADER = 9 + 4  # file header + PreviousTagSize0


def flv_tags(path: Path) -> list[tuple[int, int, bytes]]:
    """(type, timestamp ms, body) of every tag in an FLV file."""
    data = path.read_bytes()
    tags = []
    pos = FLV_HEADER
    while pos + 11 <= len(data):
        kind = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        body = data[pos + 11 : pos + 11 + size]
        if len(body) < size:
            break
        tags.append((kind, ts, body))
        pos += 11 + size + 4
    return tags


def publish(sink: NginxRtmp, name: str) -> tuple[socket.socket, ClientSession]:
    """A blocking RTMP publish session to one sink, driven by the project's sans-IO client."""
    sock = socket.create_connection(("127.0.0.1", sink.rtmp_port), timeout=10)
    session = ClientSession("sink", name, f"rtmp://127.0.0.1:{sink.rtmp_port}/sink")
    session.initiate()
    while True:
        out = session.data_to_send()
        if out:
            sock.sendall(out)
        event = session.next_event()
        while event is not None:
            if isinstance(event, Published):
                sock.setblocking(True)
                sock.settimeout(None)
                return sock, session
            event = session.next_event()
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"sink closed the connection to {name}")
        session.receive_data(data)


def looped(tags: list[tuple[int, int, bytes]]) -> Iterator[tuple[int, int, bytes]]:
    """The source played forever, timestamps carried on across loops."""
    span = tags[-1][1] + 33
    base = 0
    while True:
        for kind, ts, body in tags:
            if kind in (8, 9):
                yield kind, base + ts, body
        base += span


def drain(socks: list[socket.socket], stop: threading.Event) -> None:
    """Reads (and drops) what the sinks send back (acknowledgements), so their sends never block."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    while not stop.is_set():
        for key, _ in sel.select(0.2):
            try:
                key.fileobj.recv(65536)  # type: ignore[union-attr]
            except OSError:
                pass


def run_floor(sink: NginxRtmp, n: int, seconds: float) -> tuple[float, int]:
    """CPU % of a core of the floor sender over the window, and how many sends it made."""
    names = [f"floor{n}-{i}" for i in range(n)]
    conns = [publish(sink, name) for name in names]
    socks = [s for s, _ in conns]
    session = conns[0][1]
    stop = threading.Event()
    reader = threading.Thread(target=drain, args=(socks, stop), daemon=True)
    reader.start()
    sends = 0
    window: tuple[float, float] | None = None
    try:
        t0 = time.monotonic()
        warm = t0 + 5
        end = warm + seconds
        for kind, ts, body in looped(flv_tags(SOURCE)):
            due = t0 + ts / 1000
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)  # paced like `ffmpeg -re`
            data = session.encode_media(kind, ts, body)  # chunked once
            for s in socks:
                s.sendall(data)  # the least a Python sender does per destination
            now = time.monotonic()
            if window is None and now >= warm:
                wait_sinks(sink, names, 1)
                window = (now, cpu_seconds_self())
                sends = 0
            sends += n
            if now >= end:
                break
        assert window is not None
        elapsed = time.monotonic() - window[0]
        return 100 * (cpu_seconds_self() - window[1]) / elapsed, int(sends / elapsed)
    finally:
        stop.set()
        reader.join()
        for s in socks:
            s.close()


def run_fixed(seconds: float, work: Path) -> float:
    """CPU % of what Fanout spends on the stream before any destination: ingest, router, an output
    service with nothing to send, and the embedded nats-server, with the source publishing."""
    stack = start_stack(work / "fixed")
    pub = None
    try:
        ev = stack.create_event("fixed")
        inp = stack.add_input(ev["id"])
        stack.ok("POST", f"/v1/events/{ev['id']}/start")
        pub = publisher(inp["publish_url"])

        def connected() -> bool:
            return bool(stack.ok("GET", f"/v1/events/{ev['id']}")["inputs"][0]["connected"])

        wait_until(connected, 30, "the input to connect", interval=0.5)
        time.sleep(5)  # warm-up, as in the fan-out benchmark
        pids = stack_pids(stack, ("ingest", "router", "output"))
        cpu, _ = measure(pids, seconds)
        return sum(cpu.values())
    finally:
        if pub is not None:
            stop(pub)
        stack.stop()


RELAY = """
import asyncio, sys
import nats

async def main(url):
    nc = await nats.connect(url)

    async def on(msg):
        await nc.publish("program", msg.data)

    await nc.subscribe("input", cb=on)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1]))
"""


def run_relay(seconds: float, work: Path) -> tuple[float, float, int]:
    """The least one NATS hop costs in Python: a process that only subscribes with nats-py and publishes
    each message's bytes again (the router's job without any of its decisions), fed the source's tags at
    their own pace and drained by a subscriber. CPU % of the relay, of the nats-server, and messages/s."""
    server = start_nats(work / "relay-nats")
    relay = subprocess.Popen([sys.executable, "-c", RELAY, server.url], start_new_session=True)

    async def feed() -> tuple[float, float, int]:
        nc = await nats.connect(server.url)
        received = 0

        async def on(msg: object) -> None:
            nonlocal received
            received += 1

        await nc.subscribe("program", cb=on)
        await nc.flush()
        tags = flv_tags(SOURCE)
        deadline = time.monotonic() + 10
        while received == 0:  # probes until the relay is subscribed and forwarding
            if time.monotonic() > deadline:
                raise TimeoutError("the relay never forwarded a message")
            await nc.publish("input", b"probe")
            await asyncio.sleep(0.1)  # ok-sleep: probe interval, bounded by the deadline
        t0 = time.monotonic()
        window: tuple[float, float, float, int] | None = None
        sent = 0
        for _kind, ts, body in looped(tags):
            delay = t0 + ts / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # paced like `ffmpeg -re`
            await nc.publish("input", body)
            sent += 1
            now = time.monotonic()
            if window is None and now >= t0 + 5:
                window = (now, cpu_seconds(relay.pid), cpu_seconds(server.proc.pid), sent)
            if window is not None and now >= window[0] + seconds:
                break
        assert window is not None
        elapsed = time.monotonic() - window[0]
        relay_pct = 100 * (cpu_seconds(relay.pid) - window[1]) / elapsed
        nats_pct = 100 * (cpu_seconds(server.proc.pid) - window[2]) / elapsed
        await nc.close()
        return relay_pct, nats_pct, int((sent - window[3]) / elapsed)

    try:
        return asyncio.run(feed())
    finally:
        stop(relay)
        server.stop()


def cpu_seconds_self() -> float:
    """This process's CPU time, every thread (the drain thread's reads count too)."""
    return cpu_seconds(os.getpid())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, nargs="+", default=[100])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    make_source()
    work = Path(tempfile.mkdtemp(prefix="fanout-floor-"))
    sink = start_nginx_rtmp(work / "sink", record=False, applications=("sink",))
    rows = []
    try:
        fixed = run_fixed(args.seconds, work)
        print(f"Fanout with no destination (ingest + router + output + nats): {fixed:.1f}%", flush=True)
        relay, relay_nats, rate_in = run_relay(args.seconds, work)
        hop = relay + relay_nats
        print(
            f"minimal nats-py relay {relay:.1f}% + its nats-server {relay_nats:.1f}% ({rate_in} msg/s)",
            flush=True,
        )
        for n in args.n:
            floor, rate = run_floor(sink, n, args.seconds)
            nginx = run_nginx_push(sink, n, args.seconds, work).total_cpu_pct
            rows.append((n, floor, rate, nginx))
            print(
                f"N={n}: floor sender {floor:.1f}% ({rate} sends/s), nginx-rtmp push {nginx:.1f}%,"
                f" floor + Fanout's fixed cost {(floor + fixed) / nginx:.2f}x nginx-rtmp,"
                f" floor + one bare NATS hop {(floor + hop) / nginx:.2f}x",
                flush=True,
            )
    finally:
        sink.stop()
    command = "python bench/send_floor.py " + " ".join(sys.argv[1:])
    lines = [
        "## The floor under a Python fan-out: sends alone, next to nginx-rtmp push",
        "",
        f"Reproduce: `{command}` ({args.seconds:g} s windows after 5 s warm-up, 2-core machine, same sinks, same run).",
        "One process chunks every FLV tag of the fan-out source once and calls the blocking `socket.sendall` of",
        "each sink's connection with the same bytes: no NATS, no ingest or router, no event loop, no",
        "per-destination work. A real Python output can only cost more.",
        "",
        f"Fanout with no destination, same source, same run: {fixed:.1f} % of a core (ingest + router +",
        "an idle output + nats-server): the part of the stack's cost that does not depend on N.",
        f"One bare NATS hop, same source, same run: {hop:.1f} % ({relay:.1f} % for a process that only",
        f"subscribes with nats-py and publishes each message again, {relay_nats:.1f} % for its nats-server;",
        f"{rate_in} messages/s). The router is such a hop plus its decisions; ingest another publisher.",
        "",
        "| N | floor sender CPU % | sends/s | nginx-rtmp push CPU % (its ingest included) | floor / nginx"
        " | (floor + one bare hop) / nginx | (floor + Fanout's fixed) / nginx |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, floor, rate, nginx in rows:
        lines.append(
            f"| {n} | {floor:.1f} | {rate} | {nginx:.1f} | {floor / nginx:.2f}x | {(floor + hop) / nginx:.2f}x"
            f" | {(floor + fixed) / nginx:.2f}x |"
        )
    write_section("\n".join(lines) + "\n", Path(args.out))


if __name__ == "__main__":
    main()
