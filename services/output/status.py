"""An output's status message, the same for every destination kind (RTMP, SRT)."""

from __future__ import annotations

import time
from typing import Any

from shared.messages import OutputSpec, OutputStatus

from .policy import DestinationPolicy
from .state import OutputMachine


def output_status(
    *,
    tenant_id: str,
    event_id: str,
    spec: OutputSpec,
    machine: OutputMachine,
    policy: DestinationPolicy,
    worker: str,
    wall_offset: float,
    bytes_sent: int,
    frames_sent: int,
    frames_dropped: int,
    drop_events: int,
    warnings: list[str],
    **extra: Any,
) -> OutputStatus:
    """``wall_offset`` turns the machine's monotonic times into wall-clock ones; ``extra`` carries the
    fields only some destination kinds know (queued bytes, profile, what was measured on the wire)."""
    m = machine
    return OutputStatus(
        tenant_id=tenant_id,
        event_id=event_id,
        output_id=spec.id,
        state=m.state.value,
        reason=m.reason,
        last_error=m.last_error,
        bytes_sent=bytes_sent,
        frames_sent=frames_sent,
        frames_dropped=frames_dropped,
        connects=m.connects,
        failures=m.failures,
        state_since=m.since + wall_offset,
        worker=worker,
        ts=time.time(),
        dest_class=policy.dest_class,
        consecutive_failures=m.consecutive_failures,
        retry_delay_s=round(m.retry_delay_s, 3),
        next_retry_at=m.retry_at + wall_offset if m.retry_at else 0.0,
        disabled_reason=m.disabled_reason,
        warnings=list(warnings),
        drop_events=drop_events,
        generation=spec.generation,
        **extra,
    )
