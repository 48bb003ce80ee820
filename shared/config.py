"""Settings from the environment, with the defaults of the architecture brief's table."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


def _default_worker_id() -> str:
    """Host and pid: unique across containers too (where every pid may be 1), so leases tell workers apart."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-pid{os.getpid()}"


def _opt(name: str) -> str | None:
    return os.environ.get(name) or None


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("FANOUT_DATA_DIR") or "./var").resolve()
    )
    nats_url: str | None = field(default_factory=lambda: _opt("FANOUT_NATS_URL"))
    database_url: str | None = field(default_factory=lambda: _opt("FANOUT_DATABASE_URL"))
    rtmp_port: int = field(default_factory=lambda: _int("FANOUT_RTMP_PORT", 1935))
    rtmps_port: int = field(default_factory=lambda: _int("FANOUT_RTMPS_PORT", 1936))
    tls_cert: str | None = field(default_factory=lambda: _opt("FANOUT_TLS_CERT"))
    tls_key: str | None = field(default_factory=lambda: _opt("FANOUT_TLS_KEY"))
    srt_port: int = field(default_factory=lambda: _int("FANOUT_SRT_PORT", 9000))
    http_port: int = field(default_factory=lambda: _int("FANOUT_HTTP_PORT", 8080))
    bind_host: str = field(default_factory=lambda: os.environ.get("FANOUT_BIND_HOST") or "0.0.0.0")
    public_host: str = field(default_factory=lambda: os.environ.get("FANOUT_PUBLIC_HOST") or "127.0.0.1")
    tls_ca_file: str | None = field(default_factory=lambda: _opt("FANOUT_TLS_CA_FILE"))
    destination_allowlist: str = field(
        default_factory=lambda: os.environ.get("FANOUT_DESTINATION_ALLOWLIST", "")
    )
    admin_key: str | None = field(default_factory=lambda: _opt("FANOUT_ADMIN_KEY"))
    worker_id: str = field(default_factory=lambda: os.environ.get("FANOUT_WORKER_ID") or _default_worker_id())
    log_level: str = field(default_factory=lambda: os.environ.get("FANOUT_LOG_LEVEL") or "INFO")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'fanout.db'}"

    @property
    def effective_nats_url(self) -> str:
        if self.nats_url:
            return self.nats_url
        url_file = self.data_dir / "nats.url"
        if url_file.exists():
            return url_file.read_text().strip()
        raise SystemExit(
            "FANOUT_NATS_URL is not set and no embedded NATS server is running (start the stack with `make run`)"
        )


def load() -> Settings:
    return Settings()
