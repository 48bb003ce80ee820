"""Typed bus messages. Every message on NATS is one of these frozen msgspec Structs.

New fields always get defaults so older and newer services can talk to each other. Media packets are
encoded as msgpack arrays (``array_like``): they are the hot path. Everything else is JSON-compatible
msgpack maps for readability on the wire.
"""

from __future__ import annotations

from typing import Literal, TypeVar

import msgspec

TIMEBASE = 90_000  # every media timestamp is in 1/90000 s

MediaKind = Literal["video", "audio", "data"]


class MediaPacket(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One access unit: a video frame, an audio frame, or a data message (onMetaData).

    ``data`` is canonical: H.264 as length-prefixed (4-byte) NAL units, AAC as a raw frame, data
    messages as AMF0 (``"onMetaData"`` and its object). ``config`` (avcC or AudioSpecificConfig) is
    carried on every video keyframe and every audio frame so a subscriber can start at any keyframe.
    """

    kind: MediaKind
    codec: str  # "h264", "aac", "amf0"
    dts: int
    pts: int
    keyframe: bool
    data: bytes
    config: bytes = b""
    source: str = ""  # input id the packet came from
    seq: int = 0  # per-source sequence number
    recv_ns: int = 0  # wall clock (time.time_ns) when ingest received it, for latency figures


_packet_encoder = msgspec.msgpack.Encoder()
_packet_decoder = msgspec.msgpack.Decoder(MediaPacket)


def encode_packet(packet: MediaPacket) -> bytes:
    return _packet_encoder.encode(packet)


def decode_packet(data: bytes) -> MediaPacket:
    return _packet_decoder.decode(data)


# --- desired state (orchestrator -> workers, JetStream KV) ---

EventState = Literal["idle", "live", "stopped"]
InputRole = Literal["primary", "backup"]
DestinationClass = Literal["A", "B", "C"]


class InputSpec(msgspec.Struct, frozen=True):
    id: str
    role: InputRole
    protocol: str
    key_hash: str  # sha256 hex of the stream key; the key itself is never on the bus
    # SRT only. An encrypted input's AES passphrase lives in the vault: ``credential_id`` names it and
    # ingest resolves it (``credential_version`` changes on a rotation, so ingest resolves again).
    # ``passphrase`` is only ever set by an orchestrator from before the vault held input passphrases.
    passphrase: str = ""
    pbkeylen: int = 0  # 16, 24 or 32; 0 when not encrypted
    latency_ms: int = 120
    credential_id: str = ""
    credential_version: int = 0

    @property
    def encrypted(self) -> bool:
        return bool(self.passphrase or self.credential_id)

    def __repr__(self) -> str:
        return (
            f"InputSpec(id={self.id!r}, role={self.role!r}, protocol={self.protocol!r}, "
            f"encrypted={self.encrypted}, latency_ms={self.latency_ms})"
        )


class OutputSpec(msgspec.Struct, frozen=True):
    id: str
    name: str
    url: str
    dest_class: DestinationClass = "B"
    enabled: bool = True  # false once stopped on its own through the API
    auto_disabled: str = ""  # why the output was auto-disabled; it stays off until re-enabled
    generation: int = 0  # bumped on every re-enable, so a stale "disabled" report is told apart
    # the vault credential holding the destination's key: then ``url`` has no key, and the output worker
    # resolves it from the vault at connect time (only the lease holder can)
    credential_id: str = ""
    profile: str = "passthrough"  # an encoding profile's name: fed from its rendition instead of the program


RateControl = Literal["cbr", "vbr"]
H264Profile = Literal["baseline", "main", "high"]
X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]


class ProfileSpec(msgspec.Struct, frozen=True, kw_only=True):
    """An encoding profile (services.transcode.profiles validates it). ``passthrough`` has no encode."""

    name: str
    width: int = 0
    height: int = 0
    fps: int = 30
    video_bitrate_kbps: int = 0
    rate_control: RateControl = "cbr"  # vbr is capped: maxrate 1.5x the target
    keyframe_interval_s: float = 2.0  # fixed: keyint = fps * interval, no scene-cut keyframes
    h264_profile: H264Profile = "high"
    preset: X264Preset = "veryfast"
    audio_bitrate_kbps: int = 128
    channels: int = 2
    sample_rate: int = 48_000


FailoverPreference = Literal["primary", "equal"]
FailoverReason = Literal["disconnect", "loss", "black", "frozen", "silence", "manual", "return"]


class FailoverPolicy(msgspec.Struct, frozen=True):
    """When the router leaves the live input, and when it goes back. A content trigger is off at 0."""

    loss_timeout_ms: int = 2000  # no packets this long on the live input: switch
    stable_window_s: float = 30.0  # the primary must be clean this long before the program returns
    preference: FailoverPreference = "primary"  # "equal": stay on whichever input is live
    black_s: float = 0.0  # black picture this long: switch
    frozen_s: float = 0.0  # identical pictures this long: switch
    silence_s: float = 0.0  # silent audio this long: switch


class EventSpec(msgspec.Struct, frozen=True):
    tenant_id: str
    id: str
    name: str
    state: EventState
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()
    revision: int = 0
    failover: FailoverPolicy = msgspec.field(default_factory=FailoverPolicy)
    locked_input: str = ""  # an input id: no automatic switching, the program stays on it (or the slate)
    profiles: tuple[ProfileSpec, ...] = ()  # the encoding profiles the event's outputs use (not passthrough)


# --- health and state (workers -> everyone) ---


class InputHealth(msgspec.Struct, frozen=True):
    tenant_id: str
    event_id: str
    input_id: str
    connected: bool
    protocol: str = "rtmp"
    remote: str = ""
    bitrate_bps: int = 0
    fps: float = 0.0
    keyframe_interval_s: float = 0.0
    video_codec: str = ""
    audio_codec: str = ""
    width: int = 0
    height: int = 0
    audio_sample_rate: int = 0
    connected_since: float = 0.0
    packets: int = 0
    ts: float = 0.0
    # SRT transport, each second (zero for RTMP): totals since the connection started, rates now
    rtt_ms: float = 0.0
    send_rate_bps: int = 0
    recv_rate_bps: int = 0
    pkt_loss: int = 0
    pkt_retrans: int = 0
    pkt_drop: int = 0  # too late to play
    rcv_buffer_ms: int = 0
    flight_size: int = 0
    latency_ms: int = 0
    loss_pct: float = 0.0  # over the last few seconds
    degraded: bool = False  # a contribution threshold crossed (sustained loss >= 1 %, RTT > 150 ms, drops)
    degraded_reasons: tuple[str, ...] = ()


class OutputStatus(msgspec.Struct, frozen=True):
    tenant_id: str
    event_id: str
    output_id: str
    state: str
    reason: str = ""
    last_error: str = ""
    bytes_sent: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0
    connects: int = 0
    failures: int = 0
    state_since: float = 0.0
    worker: str = ""
    ts: float = 0.0
    dest_class: str = ""
    consecutive_failures: int = 0
    retry_delay_s: float = 0.0  # the pause chosen on entering backoff or rejected
    next_retry_at: float = 0.0  # wall clock of the next attempt (0 when none is scheduled)
    disabled_reason: str = ""
    warnings: list[str] = []  # the program breaks this output's destination class (keyframe interval...)
    queued_bytes: int = 0  # written but not yet accepted by the socket: the destination's queue
    drop_events: int = 0  # times the queue overflowed and the destination skipped to a keyframe
    generation: int = 0  # the OutputSpec generation this status is about
    profile: str = ""  # the encoding profile it is fed from
    sent_bitrate_bps: int = 0  # measured on what it wrote, over the last seconds
    sent_keyframe_interval_s: float = 0.0  # the longest of the last keyframe intervals it wrote


class SessionEvent(msgspec.Struct, frozen=True):
    action: Literal["accepted", "refused", "closed"]
    reason: str = ""
    tenant_id: str = ""
    event_id: str = ""
    input_id: str = ""
    remote: str = ""
    protocol: str = "rtmp"
    ts: float = 0.0


class FailoverEvent(msgspec.Struct, frozen=True):
    """One switch of the program from one source to another, published when it took effect.

    ``from``/``to`` are input ids, or ``"slate"`` for the standby picture. ``activation_ms`` runs from
    the trigger to the first program packet from the new source.
    """

    tenant_id: str
    event_id: str
    from_input: str = msgspec.field(default="", name="from")
    to_input: str = msgspec.field(default="", name="to")
    reason: FailoverReason = "loss"
    planned: bool = False  # a return or manual switch: no gap in the program
    trigger_ts: float = 0.0  # unix seconds
    activated_ts: float = 0.0
    activation_ms: float = 0.0
    seq: int = 0  # per router process, increasing


class RouterInputState(msgspec.Struct, frozen=True):
    input_id: str
    role: str
    healthy: bool = False
    problem: str = ""  # disconnect, loss, black, frozen or silence when not healthy
    clean_s: float = 0.0  # how long it has been healthy


class RouterStatus(msgspec.Struct, frozen=True):
    """The router's view of one event, each second and on every switch."""

    tenant_id: str
    event_id: str
    live_input: str = ""  # an input id, "slate", or "" before the program started
    pending_input: str = ""  # a switch decided but waiting for the new source's keyframe
    mode: Literal["auto", "locked"] = "auto"
    locked_input: str = ""
    inputs: list[RouterInputState] = []
    recent_switches: list[FailoverEvent] = []
    packets_out: int = 0
    ts: float = 0.0


class ProgramMark(msgspec.Struct, frozen=True):
    """Where an event's program timeline stands (KV), so a restarted router continues it seamlessly."""

    last_dts: int  # the highest program DTS sent (1/90000)
    last_wall: float  # unix seconds when it was sent
    lead: int = 0  # how far (1/90000) the program ran ahead of the wall clock


class RouterCommand(msgspec.Struct, frozen=True):
    """Request/reply to the event's router: a one-shot operator action."""

    action: Literal["switch"]
    input_id: str


class RouterReply(msgspec.Struct, frozen=True):
    ok: bool
    code: str = ""  # on refusal: locked, unknown_input, not_delivering
    message: str = ""
    live_input: str = ""


class WorkerStats(msgspec.Struct, frozen=True):
    """Per-process data-plane figures, each second: what a benchmark or dashboard reads."""

    service: str
    worker: str
    destinations: int = 0
    frames_sent: int = 0
    frames_dropped: int = 0
    latency_us: list[int] = []  # ingest receive -> last destination socket write, one per packet
    ts: float = 0.0
    counters: dict[str, int] = {}  # e.g. ingest: connections, accepted, refused, protocol_errors
    outputs_by_state: dict[str, int] = {}  # output service: how many outputs are in each state
    reconnect_cap: int = 0  # output service: connection attempts allowed at once in this process
    reconnecting: int = 0  # attempts running now
    reconnecting_max: int = 0  # the most ever running at once (never above reconnect_cap)
    reconnect_waiting: int = 0  # attempts waiting for a slot now
    program_frames: int = 0  # output service: audio and video frames its fan-outs received, ever


_json_encoder = msgspec.json.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    """Encode a control-plane message (JSON, readable with `nats sub`)."""
    return _json_encoder.encode(message)


T = TypeVar("T")


def decode(data: bytes, kind: type[T]) -> T:
    return msgspec.json.decode(data, type=kind)
