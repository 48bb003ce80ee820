"""The orchestrator as a real process (`python -m services.orchestrator`) on a free port, with a small
JSON client. Reusable by any test that needs the API: ``start_orchestrator(workdir, nats_url)``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.peers.ports import free_port
from tests.peers.procs import stop, wait_until

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class OrchestratorProcess:
    proc: subprocess.Popen[bytes]
    http_port: int
    admin_key: str | None
    data_dir: Path
    stdout_path: Path
    stderr_path: Path
    env: dict[str, str] = field(default_factory=dict)
    vault: subprocess.Popen[bytes] | None = None  # the vault service the API stores keys in

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def call(
        self, method: str, path: str, body: Any = None, key: str | None = None, timeout: float = 15
    ) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if key or self.admin_key:
            req.add_header("Authorization", f"Bearer {key or self.admin_key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    def ok(self, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
        status, out = self.call(method, path, body, key)
        assert 200 <= status < 300, f"{method} {path} -> {status} {out}"
        return out

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def log_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> int | None:
        code = stop(self.proc, timeout)
        if self.vault is not None:
            stop(self.vault, timeout)
        return code


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def start_orchestrator(
    workdir: Path,
    nats_url: str,
    database_url: str | None = None,
    admin_key: str | None = None,
    extra_env: dict[str, str] | None = None,
    http_port: int | None = None,
    with_vault: bool = True,
) -> OrchestratorProcess:
    """Start the orchestrator and wait for /healthz. ``admin_key=None`` lets it generate (and print) one.
    ``with_vault`` starts the vault service beside it (same data dir and database), as the stack does."""
    data_dir = workdir / "var"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = http_port or free_port()
    env = {
        **os.environ,
        "FANOUT_NATS_URL": nats_url,
        "FANOUT_DATA_DIR": str(data_dir),
        "FANOUT_HTTP_PORT": str(port),
        "FANOUT_BIND_HOST": "127.0.0.1",
        "FANOUT_PUBLIC_HOST": "127.0.0.1",
        "FANOUT_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("FANOUT_DATABASE_URL", "FANOUT_ADMIN_KEY"):
        env.pop(name, None)
    if database_url:
        env["FANOUT_DATABASE_URL"] = database_url
    if admin_key:
        env["FANOUT_ADMIN_KEY"] = admin_key
    env.update(extra_env or {})
    runs = len(list(workdir.glob("orchestrator*.stdout")))
    stdout_path, stderr_path = workdir / f"orchestrator{runs}.stdout", workdir / f"orchestrator{runs}.stderr"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.orchestrator"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    orch = OrchestratorProcess(proc, port, admin_key, data_dir, stdout_path, stderr_path, env)
    try:
        wait_until(lambda: proc.poll() is not None or _healthy(port), 30, "the orchestrator's /healthz")
        if proc.poll() is not None:
            raise RuntimeError(f"orchestrator exited ({proc.returncode}):\n{orch.log_text()[-4000:]}")
        if with_vault:
            orch.vault = _start_vault(workdir, env, runs)
    except BaseException:
        orch.stop()
        raise
    return orch


def _start_vault(workdir: Path, env: dict[str, str], run: int) -> subprocess.Popen[bytes]:
    log_path = workdir / f"vault{run}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.vault"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready() -> bool:
        return proc.poll() is not None or "vault.ready" in log_path.read_text(errors="replace")

    wait_until(ready, 30, "the vault to subscribe")
    if proc.poll() is not None:
        raise RuntimeError(
            f"vault exited ({proc.returncode}):\n{log_path.read_text(errors='replace')[-4000:]}"
        )
    return proc
