"""Is a live connection still delivering? A pure check the shell runs each second, before TCP gives up.

Progress is judged on what the destination's TCP acknowledged, not on what left our process: a
throttled link with deep kernel buffers takes bytes in bursts but keeps delivering, and must not be
mistaken for a dead one. The shell samples three counters per connection: ``written`` (every byte
handed to the transport), ``queued`` (still in the transport's buffer) and ``in_kernel`` (in the
kernel's send queue, not yet acknowledged by the peer: SIOCOUTQ). What the peer received is
``written - queued - in_kernel``.

Two signs of a dead destination that TCP alone would take minutes to report:

- Delivery stall: bytes wait (in our queue or the kernel's) and the peer acknowledged none of them
  for the stall limit. A vanished peer (half-open) ends this way too.
- Acknowledgement stall: we asked the destination (RTMP Window Acknowledgement Size) to acknowledge
  every ``window`` bytes; more than two windows were delivered to its TCP unacknowledged by RTMP and
  nothing was acknowledged for the stall limit (the peer's socket is alive, its application is not).
  A destination that never acknowledges anything (some do not honour the window) is not judged this
  way: the check arms at its first acknowledgement.
"""

from __future__ import annotations

SEQUENCE_MOD = 2**32


class Liveness:
    def __init__(self, stall_limit_s: float, window: int, now: float) -> None:
        self.stall_limit_s = stall_limit_s
        self.window = window
        self.acked = 0  # bytes the destination acknowledged over RTMP (unwrapped)
        self.acks = 0
        self._delivered = 0
        self._last_progress = now
        self._unacked_since: float | None = None

    def on_ack(self, sequence: int, written: int) -> None:
        """An Acknowledgement: ``sequence`` is the peer's byte count modulo 2**32; ``written`` ours."""
        behind = (written - sequence) % SEQUENCE_MOD
        acked = max(0, written - behind)
        self.acks += 1
        if acked > self.acked:
            self.acked = acked
            self._unacked_since = None

    def check(self, now: float, written: int, queued: int, in_kernel: int = 0) -> str | None:
        """Why the connection should be dropped, or None (see the module text for the counters)."""
        delivered = written - queued - in_kernel
        if (queued == 0 and in_kernel == 0) or delivered > self._delivered:
            self._last_progress = now
        self._delivered = delivered
        if now - self._last_progress >= self.stall_limit_s:
            return (
                f"nothing delivered for {self.stall_limit_s:g} s ({(queued + in_kernel) // 1024} KB waiting)"
            )
        if not self.acks:
            return None
        unacked = delivered - self.acked
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
