"""Response DTOs of the REST API and how they are built from stored records and live status.

Nothing secret leaves through these types: output URLs are sanitised, stream keys appear only as a
hint (except in ``InputCreated``, the one response that hands the key over), API keys only in
``ApiKeyCreated``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from services.output import presets
from shared import urls
from shared.config import Settings
from shared.messages import (
    DestinationClass,
    EventState,
    FailoverPolicy,
    FailoverPreference,
    InputHealth,
    InputRole,
    OutputStatus,
    ProfileSpec,
    RouterStatus,
)
from shared.srt.streamid import publish_streamid
from shared.vault_messages import CredentialInfo

from . import auth, store

Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]  # RFC 3339, UTC


class Healthz(msgspec.Struct, frozen=True):
    ok: bool


class ErrorDetail(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str
    message: str
    field: str | None = None


class ErrorResponse(msgspec.Struct, frozen=True):
    error: ErrorDetail


class TenantView(msgspec.Struct, frozen=True):
    id: str
    name: str
    created_at: Timestamp


class TenantList(msgspec.Struct, frozen=True):
    tenants: list[TenantView]


class ApiKeyCreated(msgspec.Struct, frozen=True):
    id: str
    tenant_id: str
    key: str  # shown once
    created_at: Timestamp


class EventSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    state: EventState
    revision: int
    created_at: Timestamp
    updated_at: Timestamp


class EventList(msgspec.Struct, frozen=True):
    events: list[EventSummary]


class InputView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    event_id: str
    role: InputRole
    protocol: str
    publish_url: str  # stream key masked
    stream_key_hint: str  # "…abcd"
    created_at: Timestamp
    # live, from the latest InputHealth (zero values when none is recent)
    connected: bool = False
    bitrate_bps: int = 0
    fps: float = 0.0
    keyframe_interval_s: float = 0.0
    video_codec: str = ""
    audio_codec: str = ""
    width: int = 0
    height: int = 0
    # SRT inputs: their options (the passphrase itself is never shown) and, while connected, transport
    latency_ms: int | None = None
    encrypted: bool = False
    pbkeylen: int | None = None
    credential_id: str | None = None  # SRT: the vault credential holding the passphrase (rotate it there)
    srt: SrtTransportView | None = None
    degraded: bool = False  # a contribution threshold is crossed; degraded_reasons says which
    degraded_reasons: list[str] = []


class SrtTransportView(msgspec.Struct, frozen=True, kw_only=True):
    """The connected SRT caller's link, from libsrt each second: totals since it connected, rates now."""

    rtt_ms: float = 0.0
    send_rate_bps: int = 0
    recv_rate_bps: int = 0
    pkt_loss: int = 0  # lost packets detected (most recovered by retransmission)
    pkt_retrans: int = 0  # retransmitted packets received
    pkt_drop: int = 0  # packets that came too late to play
    loss_pct: float = 0.0  # over the last few seconds
    rcv_buffer_ms: int = 0
    flight_size: int = 0
    latency_ms: int = 0  # as negotiated with the caller


class InputCreated(InputView, frozen=True, kw_only=True):
    stream_key: str  # shown once; publish_url holds it too, in full


class OutputView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    event_id: str
    name: str
    url: str  # sanitised: the stream key is masked
    dest_class: DestinationClass = msgspec.field(name="class")
    enabled: bool
    created_at: Timestamp
    # live, from the latest OutputStatus ("idle" and zeros when none)
    state: str = "idle"
    reason: str = ""
    last_error: str = ""
    bytes_sent: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0
    connects: int = 0
    failures: int = 0
    state_since: Timestamp | None = None
    consecutive_failures: int = 0
    retry_delay_s: float = 0.0
    next_retry_at: Timestamp | None = None
    disabled_reason: str = ""  # set while auto-disabled: POST .../start re-enables it
    warnings: list[str] = []  # where the program breaks this output's destination class
    queued_bytes: int = 0
    drop_events: int = 0
    preset: str | None = None
    paired_output_id: str | None = None  # the paired backup-ingest output (or the primary of a backup)
    credential_id: str | None = None  # the vault credential that holds the key
    profile: str = "passthrough"  # the encoding profile the output is fed from
    sent_bitrate_bps: int = 0  # measured on what the destination wrote, over the last seconds
    sent_keyframe_interval_s: float = 0.0  # the longest of the last keyframe intervals sent


class PresetView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    title: str
    server: str  # the stream key goes after a '/'
    backup_server: str | None
    schemes: list[str]
    dest_class: DestinationClass = msgspec.field(name="class")


class PresetList(msgspec.Struct, frozen=True):
    presets: list[PresetView]


class FailoverView(msgspec.Struct, frozen=True, kw_only=True):
    loss_timeout_ms: int = 2000
    stable_window_s: float = 30.0
    preference: FailoverPreference = "primary"
    black_s: float | None = None  # null: the trigger is off
    frozen_s: float | None = None
    silence_s: float | None = None


class SwitchView(msgspec.Struct, frozen=True, kw_only=True):
    from_input: str = msgspec.field(name="from")  # an input id, or "slate"
    to_input: str = msgspec.field(name="to")
    reason: str
    planned: bool
    triggered_at: Timestamp
    activated_at: Timestamp
    activation_ms: float


class ProgramView(msgspec.Struct, frozen=True, kw_only=True):
    """Which input is on air, as the router reports it (null when no report is recent)."""

    mode: Literal["auto", "locked"] = "auto"
    locked_input: str | None = None
    live_input: str | None = None  # an input id, or "slate" while every input is lost
    pending_input: str | None = None
    recent_switches: list[SwitchView] = []


class SwitchRequested(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    input_id: str
    message: str


class RollbackView(msgspec.Struct, frozen=True, kw_only=True):
    min_priority: int  # outputs whose class priority is at most this stayed on
    restores_lock: str | None  # the input lock put back when rollback ends (None: automatic)


class EventView(EventSummary, frozen=True, kw_only=True):
    inputs: list[InputView]
    outputs: list[OutputView]
    failover: FailoverView = msgspec.field(default_factory=FailoverView)
    program: ProgramView = msgspec.field(default_factory=ProgramView)
    rollback: RollbackView | None = None  # set while rollback mode is on


def failover_view(policy: FailoverPolicy) -> FailoverView:
    return FailoverView(
        loss_timeout_ms=policy.loss_timeout_ms,
        stable_window_s=policy.stable_window_s,
        preference=policy.preference,
        black_s=policy.black_s or None,
        frozen_s=policy.frozen_s or None,
        silence_s=policy.silence_s or None,
    )


def program_view(locked_input: str, status: RouterStatus | None) -> ProgramView:
    live = status or RouterStatus(tenant_id="", event_id="")
    return ProgramView(
        mode="locked" if locked_input else "auto",
        locked_input=locked_input or None,
        live_input=live.live_input or None,
        pending_input=live.pending_input or None,
        recent_switches=[
            SwitchView(
                from_input=s.from_input,
                to_input=s.to_input,
                reason=s.reason,
                planned=s.planned,
                triggered_at=_time(s.trigger_ts),
                activated_at=_time(s.activated_ts),
                activation_ms=s.activation_ms,
            )
            for s in live.recent_switches
        ],
    )


def _time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def tenant_view(tenant: store.Tenant) -> TenantView:
    return TenantView(id=tenant.id, name=tenant.name, created_at=_time(tenant.created_at))


def api_key_created(issued: auth.IssuedKey) -> ApiKeyCreated:
    return ApiKeyCreated(
        id=issued.id, tenant_id=issued.tenant_id, key=issued.key, created_at=_time(issued.created_at)
    )


def event_summary(event: store.Event) -> EventSummary:
    return EventSummary(
        id=event.id,
        name=event.name,
        state=event.state,  # type: ignore[arg-type]
        revision=event.revision,
        created_at=_time(event.created_at),
        updated_at=_time(event.updated_at),
    )


def publish_url(settings: Settings, stream_key: str, row: store.Input | None = None) -> str:
    """Where a publisher sends: RTMP, or the SRT caller URL with its stream id (and a passphrase hint)."""
    if row is None or row.protocol != "srt":
        return f"rtmp://{settings.public_host}:{settings.rtmp_port}/live/{stream_key}"
    url = f"srt://{settings.public_host}:{settings.srt_port}?streamid={publish_streamid(stream_key)}"
    if row.encrypted:
        hint = row.passphrase_hint or urls.mask_secret(row.passphrase) or "****"
        url += f"&passphrase={hint}&pbkeylen={row.pbkeylen or 16}"
    return url


def _srt_fields(row: store.Input, health: InputHealth | None) -> dict[str, Any]:
    if row.protocol != "srt":
        return {}
    fields: dict[str, Any] = {
        "latency_ms": row.latency_ms,
        "encrypted": row.encrypted,
        "pbkeylen": (row.pbkeylen or 16) if row.encrypted else None,
        "credential_id": row.credential_id,
    }
    if health is not None and health.connected:
        fields["srt"] = SrtTransportView(
            rtt_ms=health.rtt_ms,
            send_rate_bps=health.send_rate_bps,
            recv_rate_bps=health.recv_rate_bps,
            pkt_loss=health.pkt_loss,
            pkt_retrans=health.pkt_retrans,
            pkt_drop=health.pkt_drop,
            loss_pct=health.loss_pct,
            rcv_buffer_ms=health.rcv_buffer_ms,
            flight_size=health.flight_size,
            latency_ms=health.latency_ms,
        )
        fields["degraded"] = health.degraded
        fields["degraded_reasons"] = list(health.degraded_reasons)
    return fields


def input_view(settings: Settings, row: store.Input, health: InputHealth | None) -> InputView:
    live: dict[str, Any] = {}
    if health is not None and health.connected:
        live = {
            "connected": True,
            "bitrate_bps": health.bitrate_bps,
            "fps": health.fps,
            "keyframe_interval_s": health.keyframe_interval_s,
            "video_codec": health.video_codec,
            "audio_codec": health.audio_codec,
            "width": health.width,
            "height": health.height,
        }
    return InputView(
        id=row.id,
        event_id=row.event_id,
        role=row.role,  # type: ignore[arg-type]
        protocol=row.protocol,
        publish_url=publish_url(settings, "****" + row.key_hint, row),
        stream_key_hint="…" + row.key_hint,
        created_at=_time(row.created_at),
        **live,
        **_srt_fields(row, health),
    )


def input_created(settings: Settings, row: store.Input, stream_key: str) -> InputCreated:
    view = input_view(settings, row, None)
    fields = {f: getattr(view, f) for f in view.__struct_fields__}
    fields["publish_url"] = publish_url(settings, stream_key, row)
    return InputCreated(stream_key=stream_key, **fields)


def output_view(row: store.Output, status: OutputStatus | None) -> OutputView:
    live: dict[str, Any] = {}
    if status is not None:
        live = {
            "state": status.state,
            "reason": status.reason,
            "last_error": status.last_error,
            "bytes_sent": status.bytes_sent,
            "frames_sent": status.frames_sent,
            "frames_dropped": status.frames_dropped,
            "connects": status.connects,
            "failures": status.failures,
            "state_since": _time(status.state_since) if status.state_since else None,
            "consecutive_failures": status.consecutive_failures,
            "retry_delay_s": status.retry_delay_s,
            "next_retry_at": _time(status.next_retry_at) if status.next_retry_at else None,
            "disabled_reason": status.disabled_reason,
            "warnings": list(status.warnings),
            "queued_bytes": status.queued_bytes,
            "drop_events": status.drop_events,
            "sent_bitrate_bps": status.sent_bitrate_bps,
            "sent_keyframe_interval_s": status.sent_keyframe_interval_s,
        }
        if status.generation != row.generation:
            live = {}  # a report from before the last re-enable
    if row.auto_disabled and row.enabled:
        live.setdefault("state", "disabled")
        live["disabled_reason"] = live.get("disabled_reason") or row.auto_disabled
    return OutputView(
        id=row.id,
        event_id=row.event_id,
        name=row.name,
        url=shown_url(row),
        dest_class=row.dest_class,  # type: ignore[arg-type]
        enabled=row.enabled,
        created_at=_time(row.created_at),
        preset=row.preset,
        paired_output_id=row.pair_id,
        credential_id=row.credential_id,
        profile=row.profile,
        **live,
    )


def shown_url(row: store.Output) -> str:
    """The URL as a user may see it: a key split off into the vault shows as its hint."""
    if row.credential_id and row.url[:6].lower() == "srt://":  # the passphrase is in the vault
        return urls.sanitize(f"{row.url}{'&' if '?' in row.url else '?'}passphrase=vault")
    if row.credential_id:  # the stored URL has no key: it was split off, or never given
        return f"{row.url}/{row.key_hint}" if row.key_hint else row.url
    return urls.sanitize(row.url)


CredentialStatusText = Literal["unverified", "valid", "invalid"]


class CredentialView(msgspec.Struct, frozen=True, kw_only=True):
    """A credential without its value: ``hint`` shows at most the last four characters."""

    id: str
    name: str
    kind: str
    hint: str
    version: int  # send it back with a rotate to fail (409) on a concurrent change
    preset: str | None = None
    status: CredentialStatusText = "unverified"
    last_error: str = ""
    verified_at: Timestamp | None = None
    probed: bool = False
    created_at: Timestamp
    updated_at: Timestamp


class CredentialList(msgspec.Struct, frozen=True):
    credentials: list[CredentialView]


class RekeyView(msgspec.Struct, frozen=True, kw_only=True):
    active_version: int
    versions: list[int]
    retired: list[int]
    rewrapped: int
    failed: list[str]


def credential_view(info: CredentialInfo) -> CredentialView:
    return CredentialView(
        id=info.id,
        name=info.name,
        kind=info.kind,
        hint=info.hint,
        version=info.version,
        preset=info.preset or None,
        status=info.status,
        last_error=info.last_error,
        verified_at=_time(info.verified_at) if info.verified_at else None,
        probed=info.probed,
        created_at=_time(info.created_at),
        updated_at=_time(info.updated_at),
    )


def preset_list() -> PresetList:
    return PresetList(
        presets=[
            PresetView(
                name=p.name,
                title=p.title,
                server=p.server,
                backup_server=p.backup_server,
                schemes=list(p.schemes),
                dest_class=p.dest_class,  # type: ignore[arg-type]
            )
            for p in presets.PRESETS.values()
        ]
    )


class ProfileView(ProfileSpec, frozen=True, kw_only=True):
    builtin: bool = False


class ProfileList(msgspec.Struct, frozen=True):
    profiles: list[ProfileView]


def profile_view(p: ProfileSpec, builtin: bool) -> ProfileView:
    return ProfileView(**msgspec.structs.asdict(p), builtin=builtin)


def rollback_view(state: store.Rollback | None) -> RollbackView | None:
    if state is None:
        return None
    return RollbackView(min_priority=state.min_priority, restores_lock=state.locked_input or None)
