"""How the launcher starts a child: in its own process group, so Ctrl-C reaches only the launcher
(which then stops services before NATS, in order), and tied to the launcher's life with
PR_SET_PDEATHSIG, so a launcher killed with SIGKILL leaves no orphans behind."""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Callable
from typing import TypedDict

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: children may outlive a killed launcher


class SpawnOptions(TypedDict):
    start_new_session: bool
    preexec_fn: Callable[[], None]


SPAWN_OPTIONS: SpawnOptions = {"start_new_session": True, "preexec_fn": die_with_parent}
