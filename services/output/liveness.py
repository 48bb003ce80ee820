"""Is a live connection still delivering? A pure check the shell runs each second, before TCP gives up.

Two signs of a dead destination that TCP alone would take minutes to report:

- Write stall: bytes wait in our queue (the transport's buffer) and none of them reached the socket
  for the stall limit.
- Acknowledgement stall: we asked the destination (RTMP Window Acknowledgement Size) to acknowledge
  every ``window`` bytes; more than two windows went into the socket unacknowledged and nothing was
  acknowledged for the stall limit. A destination that never acknowledges anything (some do not
  honour the window) is not judged this way: the check arms at its first acknowledgement.

A third, a peer that vanished without a FIN or RST (half-open), is left to the kernel: the shell sets
TCP_USER_TIMEOUT and keepalives to the stall limit, and the read fails.
"""

from __future__ import annotations

SEQUENCE_MOD = 2**32


class Liveness:
    def __init__(self, stall_limit_s: float, window: int, now: float) -> None:
        self.stall_limit_s = stall_limit_s
        self.window = window
        self.acked = 0  # bytes the destination acknowledged (unwrapped)
        self.acks = 0
        self._written_to_socket = 0
        self._last_write_progress = now
        self._unacked_since: float | None = None

    def on_ack(self, sequence: int, written: int) -> None:
        """An Acknowledgement: ``sequence`` is the peer's byte count modulo 2**32; ``written`` ours."""
        behind = (written - sequence) % SEQUENCE_MOD
        acked = max(0, written - behind)
        self.acks += 1
        if acked > self.acked:
            self.acked = acked
            self._unacked_since = None

    def check(self, now: float, written: int, queued: int) -> str | None:
        """Why the connection should be dropped, or None. ``written``: every byte handed to the
        transport on this connection; ``queued``: those still in its buffer, not yet in the socket."""
        in_socket = written - queued
        if queued == 0 or in_socket > self._written_to_socket:
            self._last_write_progress = now
        self._written_to_socket = in_socket
        if now - self._last_write_progress >= self.stall_limit_s:
            return f"no write progress for {self.stall_limit_s:g} s ({queued // 1024} KB queued)"
        if not self.acks:
            return None
        unacked = in_socket - self.acked
        if unacked <= 2 * self.window:
            self._unacked_since = None
            return None
        if self._unacked_since is None:
            self._unacked_since = now
        if now - self._unacked_since >= self.stall_limit_s:
            return (
                f"destination acknowledged nothing for {self.stall_limit_s:g} s "
                f"({unacked // 1024} KB unacknowledged)"
            )
        return None
