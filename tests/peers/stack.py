"""The whole Fanout stack as a user runs it: `python -m services.launcher` (embedded NATS, SQLite),
on free ports, with a small JSON API client. Always stopped (SIGTERM, then SIGKILL) at teardown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ports import free_port
from .procs import port_open, stop, wait_until

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    http_port: int
    rtmp_port: int
    admin_key: str
    env: dict[str, str] = field(default_factory=dict)
    srt_port: int = 0  # UDP

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def call(self, method: str, path: str, body: Any = None, key: str | None = None) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {key or self.admin_key}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
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

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def child_pid(self, service: str) -> int | None:
        """The pid of a service process started by this stack's launcher."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and f"services.{service}".encode() in cmdline:
                return int(entry.name)
        return None

    def kill_service(self, service: str, sig: int = signal.SIGKILL) -> int:
        pid = self.child_pid(service)
        assert pid is not None, f"{service} is not running"
        os.kill(pid, sig)
        return pid

    def stop(self) -> int | None:
        return stop(self.proc, timeout=20)

    def restart(self) -> int | None:
        """Stop the whole stack and start it again on the same data, ports and keys."""
        code = self.stop()
        self.proc = _launch(self.env, self.log_path)
        _wait_ready(self)
        return code

    # --- conveniences for tests ---

    def create_event(self, name: str = "test event", key: str | None = None) -> dict[str, Any]:
        return dict(self.ok("POST", "/v1/events", {"name": name}, key))

    def add_input(
        self,
        event_id: str,
        role: str = "primary",
        key: str | None = None,
        protocol: str = "rtmp",
        **options: Any,
    ) -> dict[str, Any]:
        """An input; ``options`` are extra body fields (SRT: passphrase, pbkeylen, latency_ms)."""
        body = {"role": role, "protocol": protocol, **options}
        return dict(self.ok("POST", f"/v1/events/{event_id}/inputs", body, key))

    def add_output(
        self, event_id: str, url: str, name: str = "dest", cls: str = "B", key: str | None = None
    ) -> dict[str, Any]:
        return dict(
            self.ok("POST", f"/v1/events/{event_id}/outputs", {"name": name, "url": url, "class": cls}, key)
        )

    def event(self, event_id: str, key: str | None = None) -> dict[str, Any]:
        return dict(self.ok("GET", f"/v1/events/{event_id}", key=key))

    def output_of(self, event_id: str, output_id: str) -> dict[str, Any]:
        for out in self.event(event_id)["outputs"]:
            if out["id"] == output_id:
                return dict(out)
        raise KeyError(output_id)

    def wait_output_state(
        self, event_id: str, output_id: str, state: str, timeout: float = 20
    ) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def check() -> bool:
            seen.update(self.output_of(event_id, output_id))
            return seen.get("state") == state

        try:
            wait_until(check, timeout, f"output {output_id} to be {state}", interval=0.2)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last seen: {seen.get('state')} ({seen.get('last_error')})") from None
        return seen

    def wait_input(
        self,
        event_id: str,
        input_id: str,
        ready: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 20,
    ) -> dict[str, Any]:
        """The input's view once ``ready`` holds for it (``what`` names the condition in a timeout)."""
        seen: dict[str, Any] = {}

        def check() -> bool:
            for item in self.event(event_id)["inputs"]:
                if item["id"] == input_id:
                    seen.clear()
                    seen.update(item)
                    return ready(item)
            return False

        wait_until(check, timeout, f"input {input_id} {what}", interval=0.2)
        return seen

    def wait_input_connected(self, event_id: str, input_id: str, timeout: float = 20) -> dict[str, Any]:
        return self.wait_input(
            event_id, input_id, lambda i: bool(i.get("connected")), "to be connected", timeout
        )

    def wait_input_tracks(self, event_id: str, input_id: str, timeout: float = 20) -> dict[str, Any]:
        """Connected, and both tracks known: codecs are reported once the first media of each arrived."""
        return self.wait_input(
            event_id,
            input_id,
            lambda i: bool(i.get("connected") and i.get("video_codec") and i.get("audio_codec")),
            "to be connected with video and audio",
            timeout,
        )


def start_stack(workdir: Path, extra_env: dict[str, str] | None = None) -> Stack:
    data_dir = workdir / "var"
    data_dir.mkdir(parents=True, exist_ok=True)
    http_port, rtmp_port = free_port(), free_port()
    srt_port = int((extra_env or {}).get("FANOUT_SRT_PORT") or free_port(socket.SOCK_DGRAM))
    admin_key = "test-admin-" + os.urandom(8).hex()
    env = {
        **os.environ,
        "FANOUT_DATA_DIR": str(data_dir),
        "FANOUT_HTTP_PORT": str(http_port),
        "FANOUT_RTMP_PORT": str(rtmp_port),
        "FANOUT_SRT_PORT": str(srt_port),
        "FANOUT_BIND_HOST": "127.0.0.1",
        "FANOUT_PUBLIC_HOST": "127.0.0.1",
        "FANOUT_ADMIN_KEY": admin_key,
        "FANOUT_DESTINATION_ALLOWLIST": "127.0.0.0/8,::1/128",  # the test peers are on loopback
        "FANOUT_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("FANOUT_NATS_URL", None)
    env.pop("FANOUT_DATABASE_URL", None)
    env.update(extra_env or {})
    log_path = workdir / "stack.log"
    stack = Stack(_launch(env, log_path), data_dir, log_path, http_port, rtmp_port, admin_key, env, srt_port)
    _wait_ready(stack)
    return stack


def _launch(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.launcher"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_ready(stack: Stack) -> None:
    proc = stack.proc
    try:
        wait_until(
            lambda: proc.poll() is not None or (port_open(stack.http_port) and port_open(stack.rtmp_port)),
            60,
            "the stack's API and RTMP ports",
            interval=0.1,
        )
        if proc.poll() is not None:
            raise RuntimeError(f"launcher exited early:\n{stack.log_text()[-4000:]}")
        wait_until(lambda: stack.call("GET", "/healthz")[0] == 200, 30, "the API to answer", interval=0.1)
        # the vault answers through the API once it is up: creating outputs needs it
        wait_until(
            lambda: stack.call("GET", "/v1/credentials")[0] == 200, 30, "the vault to answer", interval=0.1
        )
    except BaseException:
        stack.stop()
        raise
