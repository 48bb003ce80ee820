"""Free loopback ports for test peers."""

from __future__ import annotations

import socket


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bound_ports(table: str, listen_only: bool) -> set[int]:
    ports: set[int] = set()
    for name in (f"/proc/net/{table}", f"/proc/net/{table}6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if listen_only and fields[3] != "0A":  # TCP_LISTEN
                        continue
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except FileNotFoundError:
            continue
    return ports


def tcp_listening(port: int) -> bool:
    """True when something listens on `port`, checked without connecting (a one-shot listener such as
    `ffmpeg -listen 1` would take a probe connection for its client)."""
    return port in _bound_ports("tcp", listen_only=True)


def udp_bound(port: int) -> bool:
    """True when a UDP socket is bound to `port` (e.g. an SRT listener is ready)."""
    return port in _bound_ports("udp", listen_only=False)
