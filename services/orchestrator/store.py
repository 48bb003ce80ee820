"""Reads and writes of tenants, events, inputs and outputs: one transaction per call.

Every call that names a resource is scoped by tenant, and a resource of another tenant is simply not
found. Every change to an event's desired state locks the event row and bumps its revision in the
same transaction. These functions block; the API runs them in a thread.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from services.transcode import profiles
from shared.ids import new_id
from shared.messages import ProfileSpec

from . import db


class NotFound(Exception):
    """The resource does not exist for this tenant."""


class Conflict(Exception):
    """The request contradicts the current state."""


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    created_at: float


@dataclass(frozen=True)
class Event:
    id: str
    tenant_id: str
    name: str
    state: str
    revision: int
    created_at: float
    updated_at: float
    failover: str = ""  # FailoverPolicy as JSON; "" means the defaults
    locked_input: str = ""
    rollback: str = ""  # Rollback as JSON while rollback mode is on: what to restore; "" = off


@dataclass(frozen=True)
class Input:
    id: str
    event_id: str
    tenant_id: str
    role: str
    protocol: str
    key_hash: str
    key_hint: str
    created_at: float
    passphrase: str = field(default="", repr=False)  # only from before the vault: moved there at start
    pbkeylen: int = 0
    latency_ms: int = 120
    credential_id: str | None = None  # SRT: the vault credential with the passphrase
    credential_version: int = 0
    passphrase_hint: str = ""

    @property
    def encrypted(self) -> bool:
        return bool(self.passphrase or self.credential_id)


@dataclass(frozen=True)
class Output:
    id: str
    event_id: str
    tenant_id: str
    name: str
    url: str  # full URL with the stream key: never log or return it unsanitised
    dest_class: str
    enabled: bool
    created_at: float
    preset: str | None = None
    pair_id: str | None = None  # the paired output (a platform's backup ingest), both ways
    auto_disabled: str | None = None  # why an output worker auto-disabled it; off until re-enabled
    generation: int = 0  # bumped on every re-enable
    credential_id: str | None = None  # the vault credential with the key; ``url`` then has none
    key_hint: str | None = None  # "****abcd" when the key was split off the URL given at create
    profile: str = "passthrough"  # the encoding profile it is fed from

    def __repr__(self) -> str:
        return f"Output(id={self.id!r}, event_id={self.event_id!r}, name={self.name!r})"


@dataclass(frozen=True)
class EventDetail:
    event: Event
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    profiles: tuple[ProfileSpec, ...] = ()  # the encoding profiles its outputs use (not passthrough)


def _event(row: Any) -> Event:
    return Event(**row._mapping)


def _input(row: Any) -> Input:
    return Input(**row._mapping)


def _output(row: Any) -> Output:
    m = dict(row._mapping)
    m["enabled"] = bool(m["enabled"])
    return Output(**m)


# --- tenants ---


def create_tenant(engine: Engine, name: str) -> Tenant:
    tenant = Tenant(id=new_id("tn"), name=name, created_at=time.time())
    with engine.begin() as conn:
        if conn.scalar(sa.select(db.tenants.c.id).where(db.tenants.c.name == name)) is not None:
            raise Conflict(f"a tenant named {name!r} already exists")
        conn.execute(db.tenants.insert().values(id=tenant.id, name=name, created_at=tenant.created_at))
    return tenant


def list_tenants(engine: Engine) -> list[Tenant]:
    with engine.begin() as conn:
        rows = conn.execute(sa.select(db.tenants).order_by(db.tenants.c.created_at, db.tenants.c.id))
        return [Tenant(**row._mapping) for row in rows]


# --- events ---


def _locked_event(conn: Connection, tenant_id: str, event_id: str) -> Event:
    row = conn.execute(
        sa.select(db.events)
        .where(db.events.c.id == event_id, db.events.c.tenant_id == tenant_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound("event")
    return _event(row)


def _touch(conn: Connection, event: Event, **values: Any) -> Event:
    now = time.time()
    conn.execute(
        db.events.update()
        .where(db.events.c.id == event.id)
        .values(revision=db.events.c.revision + 1, updated_at=now, **values)
    )
    row = conn.execute(sa.select(db.events).where(db.events.c.id == event.id)).one()
    return _event(row)


def create_event(engine: Engine, tenant_id: str, name: str, failover: str = "") -> Event:
    now = time.time()
    event = Event(
        id=new_id("ev"),
        tenant_id=tenant_id,
        name=name,
        state="idle",
        revision=1,
        created_at=now,
        updated_at=now,
        failover=failover,
    )
    with engine.begin() as conn:
        conn.execute(db.events.insert().values(**event.__dict__))
    return event


def list_events(engine: Engine, tenant_id: str) -> list[Event]:
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(db.events)
            .where(db.events.c.tenant_id == tenant_id)
            .order_by(db.events.c.created_at, db.events.c.id)
        )
        return [_event(row) for row in rows]


def _detail(conn: Connection, event: Event) -> EventDetail:
    ins = conn.execute(
        sa.select(db.inputs).where(db.inputs.c.event_id == event.id).order_by(db.inputs.c.role)
    )
    outs = conn.execute(
        sa.select(db.outputs)
        .where(db.outputs.c.event_id == event.id)
        .order_by(db.outputs.c.created_at, db.outputs.c.id)
    )
    outputs = tuple(_output(r) for r in outs)
    names = sorted({o.profile for o in outputs} - {profiles.PASSTHROUGH})
    used = tuple(p for p in (_profile(conn, event.tenant_id, n) for n in names) if p is not None)
    return EventDetail(event=event, inputs=tuple(_input(r) for r in ins), outputs=outputs, profiles=used)


# --- encoding profiles: the built-ins and each tenant's own ---


def _profile(conn: Connection, tenant_id: str, name: str) -> ProfileSpec | None:
    if name in profiles.BUILTIN:
        return profiles.BUILTIN[name]
    row = conn.execute(
        sa.select(db.profiles.c.definition).where(
            db.profiles.c.tenant_id == tenant_id, db.profiles.c.name == name
        )
    ).first()
    return None if row is None else msgspec.json.decode(row[0], type=ProfileSpec)


def get_profile(engine: Engine, tenant_id: str, name: str) -> ProfileSpec | None:
    with engine.begin() as conn:
        return _profile(conn, tenant_id, name)


def list_profiles(engine: Engine, tenant_id: str) -> list[ProfileSpec]:
    with engine.begin() as conn:
        rows = conn.execute(
            sa.select(db.profiles.c.definition)
            .where(db.profiles.c.tenant_id == tenant_id)
            .order_by(db.profiles.c.name)
        )
        own = [msgspec.json.decode(r[0], type=ProfileSpec) for r in rows]
    return [*profiles.BUILTIN.values(), *own]


def create_profile(engine: Engine, tenant_id: str, profile: ProfileSpec) -> ProfileSpec:
    """Store a tenant's validated profile; Conflict when the name is taken (built-ins included)."""
    with engine.begin() as conn:
        if _profile(conn, tenant_id, profile.name) is not None:
            raise Conflict(f"a profile named {profile.name!r} exists")
        conn.execute(
            db.profiles.insert().values(
                tenant_id=tenant_id,
                name=profile.name,
                definition=msgspec.json.encode(profile).decode(),
                created_at=time.time(),
            )
        )
    return profile


class SavedOutput(msgspec.Struct, frozen=True):
    profile: str
    enabled: bool


class Rollback(msgspec.Struct, frozen=True):
    """Rollback mode of an event: on while stored; everything it changed, to put back when turned off."""

    min_priority: int  # outputs whose class priority (1 first) is at most this stay on
    locked_input: str  # the lock before rollback ("" = automatic)
    outputs: dict[str, SavedOutput]


def rollback_of(event: Event) -> Rollback | None:
    return msgspec.json.decode(event.rollback, type=Rollback) if event.rollback else None


def set_rollback(
    engine: Engine,
    tenant_id: str,
    event_id: str,
    on: bool,
    min_priority: int = 0,
    live_input: str = "",
    priorities: dict[str, int] | None = None,
) -> Event:
    """Turn rollback mode on (every output to the rollback profile, outputs below ``min_priority`` off,
    the program locked to ``live_input`` when given) or off (what it changed put back). Idempotent."""
    with engine.begin() as conn:
        event = _locked_event(conn, tenant_id, event_id)
        current = rollback_of(event)
        rows = [
            _output(r) for r in conn.execute(sa.select(db.outputs).where(db.outputs.c.event_id == event_id))
        ]
        if on:
            if current is not None:
                return event
            saved = {o.id: SavedOutput(o.profile, o.enabled) for o in rows}
            for o in rows:
                keep = (priorities or {}).get(o.dest_class, 99) <= min_priority
                conn.execute(
                    db.outputs.update()
                    .where(db.outputs.c.id == o.id)
                    .values(profile=profiles.ROLLBACK, enabled=o.enabled and keep)
                )
            state = Rollback(min_priority, event.locked_input, saved)
            lock = live_input or event.locked_input
            return _touch(conn, event, rollback=msgspec.json.encode(state).decode(), locked_input=lock)
        if current is None:
            return event
        for o in rows:
            before = current.outputs.get(o.id)
            if before is not None:
                values = {"profile": before.profile, "enabled": before.enabled}
                conn.execute(db.outputs.update().where(db.outputs.c.id == o.id).values(**values))
        return _touch(conn, event, rollback="", locked_input=current.locked_input)


def set_output_profile(engine: Engine, tenant_id: str, output_id: str, profile: str) -> Output:
    with engine.begin() as conn:
        found = _output_row(conn, tenant_id, output_id)
        if found.profile != profile:
            event = _locked_event(conn, tenant_id, found.event_id)
            ids = [output_id, *([found.pair_id] if found.pair_id else [])]
            conn.execute(db.outputs.update().where(db.outputs.c.id.in_(ids)).values(profile=profile))
            _touch(conn, event)
        return _output_row(conn, tenant_id, output_id)


def get_event(engine: Engine, tenant_id: str, event_id: str) -> EventDetail:
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(db.events).where(db.events.c.id == event_id, db.events.c.tenant_id == tenant_id)
        ).first()
        if row is None:
            raise NotFound("event")
        return _detail(conn, _event(row))


def load_event(engine: Engine, event_id: str) -> EventDetail | None:
    """Any tenant's event, for publishing desired state."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(db.events).where(db.events.c.id == event_id)).first()
        return None if row is None else _detail(conn, _event(row))


def event_ids(engine: Engine) -> list[str]:
    with engine.begin() as conn:
        return list(conn.scalars(sa.select(db.events.c.id).order_by(db.events.c.id)))


def delete_event(engine: Engine, tenant_id: str, event_id: str) -> None:
    with engine.begin() as conn:
        event = _locked_event(conn, tenant_id, event_id)
        if event.state == "live":
            raise Conflict("event is live: stop it before deleting it")
        conn.execute(db.inputs.delete().where(db.inputs.c.event_id == event_id))
        conn.execute(db.outputs.delete().where(db.outputs.c.event_id == event_id))
        conn.execute(db.events.delete().where(db.events.c.id == event_id))


def set_event_state(engine: Engine, tenant_id: str, event_id: str, live: bool) -> Event:
    with engine.begin() as conn:
        event = _locked_event(conn, tenant_id, event_id)
        if live and event.state == "live":
            raise Conflict("event is already live")
        if not live and event.state != "live":
            raise Conflict(f"event is not live (state {event.state!r})")
        return _touch(conn, event, state="live" if live else "stopped")


def update_event(
    engine: Engine, tenant_id: str, event_id: str, name: str | None = None, failover: str | None = None
) -> Event:
    """Change the name and/or the failover policy (JSON) of an event."""
    with engine.begin() as conn:
        event = _locked_event(conn, tenant_id, event_id)
        values: dict[str, Any] = {}
        if name is not None and name != event.name:
            values["name"] = name
        if failover is not None and failover != event.failover:
            values["failover"] = failover
        return _touch(conn, event, **values) if values else event


def set_locked_input(engine: Engine, tenant_id: str, event_id: str, input_id: str) -> Event:
    """Lock the event's program to one of its inputs, or unlock it with ``""``."""
    with engine.begin() as conn:
        event = _locked_event(conn, tenant_id, event_id)
        if input_id:
            owner = conn.scalar(sa.select(db.inputs.c.event_id).where(db.inputs.c.id == input_id))
            if owner != event_id:
                raise NotFound("input")
        if input_id == event.locked_input:
            return event
        return _touch(conn, event, locked_input=input_id)


# --- inputs ---


def create_input(
    engine: Engine,
    tenant_id: str,
    event_id: str,
    role: str,
    protocol: str,
    key_hash: str,
    key_hint: str,
    pbkeylen: int = 0,
    latency_ms: int = 120,
    credential_id: str | None = None,
    credential_version: int = 0,
    passphrase_hint: str = "",
) -> Input:
    created = Input(
        id=new_id("in"),
        event_id=event_id,
        tenant_id=tenant_id,
        role=role,
        protocol=protocol,
        key_hash=key_hash,
        key_hint=key_hint,
        created_at=time.time(),
        pbkeylen=pbkeylen,
        latency_ms=latency_ms,
        credential_id=credential_id,
        credential_version=credential_version,
        passphrase_hint=passphrase_hint,
    )
    with engine.begin() as conn:
        event = _locked_event(conn, tenant_id, event_id)
        taken = conn.scalar(
            sa.select(db.inputs.c.id).where(db.inputs.c.event_id == event_id, db.inputs.c.role == role)
        )
        if taken is not None:
            raise Conflict(f"event already has a {role} input ({taken})")
        conn.execute(db.inputs.insert().values(**created.__dict__))
        _touch(conn, event)
    return created


def _input_row(conn: Connection, tenant_id: str, input_id: str) -> Input:
    row = conn.execute(
        sa.select(db.inputs).where(db.inputs.c.id == input_id, db.inputs.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        raise NotFound("input")
    return _input(row)


def get_input(engine: Engine, tenant_id: str, input_id: str) -> Input:
    with engine.begin() as conn:
        return _input_row(conn, tenant_id, input_id)


def delete_input(engine: Engine, tenant_id: str, input_id: str) -> str:
    """Delete an input; returns its event id."""
    with engine.begin() as conn:
        found = _input_row(conn, tenant_id, input_id)
        event = _locked_event(conn, tenant_id, found.event_id)
        conn.execute(db.inputs.delete().where(db.inputs.c.id == input_id))
        _touch(conn, event, **({"locked_input": ""} if event.locked_input == input_id else {}))
    return found.event_id


def inputs_with_credential(engine: Engine, tenant_id: str, credential_id: str) -> list[Input]:
    """The tenant's inputs whose SRT passphrase is ``credential_id``."""
    with engine.begin() as conn:
        return _inputs_on(conn, tenant_id, credential_id)


def rotated_input_credential(
    engine: Engine, tenant_id: str, credential_id: str, version: int, hint: str
) -> list[str]:
    """After a rotation: the inputs on ``credential_id`` take its new version and hint (so ingest resolves
    the new passphrase); returns their events, whose desired state changed."""
    events = []
    with engine.begin() as conn:
        for found in _inputs_on(conn, tenant_id, credential_id):
            conn.execute(
                db.inputs.update()
                .where(db.inputs.c.id == found.id)
                .values(credential_version=version, passphrase_hint=hint)
            )
            _touch(conn, _locked_event(conn, tenant_id, found.event_id))
            events.append(found.event_id)
    return sorted(set(events))


def _inputs_on(conn: Connection, tenant_id: str, credential_id: str) -> list[Input]:
    rows = conn.execute(
        sa.select(db.inputs).where(
            db.inputs.c.tenant_id == tenant_id, db.inputs.c.credential_id == credential_id
        )
    )
    return [_input(r) for r in rows]


def inputs_with_passphrases(engine: Engine) -> list[Input]:
    """Inputs stored before the vault held input passphrases: the passphrase is still in the row."""
    with engine.begin() as conn:
        return [_input(r) for r in conn.execute(sa.select(db.inputs).where(db.inputs.c.passphrase != ""))]


def attach_input_credential(engine: Engine, row: Input, credential_id: str, version: int, hint: str) -> bool:
    """The input's passphrase moved to ``credential_id``: clear it from the row (when the row is unchanged)."""
    with engine.begin() as conn:
        done = conn.execute(
            db.inputs.update()
            .where(
                db.inputs.c.id == row.id,
                db.inputs.c.passphrase == row.passphrase,
                db.inputs.c.credential_id.is_(None),
            )
            .values(
                passphrase="", credential_id=credential_id, credential_version=version, passphrase_hint=hint
            )
        )
        if done.rowcount != 1:
            return False
        _touch(conn, _locked_event(conn, row.tenant_id, row.event_id))
    return True


# --- outputs ---


def create_output(
    engine: Engine,
    tenant_id: str,
    event_id: str,
    name: str,
    url: str,
    dest_class: str,
    preset: str | None = None,
    backup_url: str | None = None,
    credential_id: str | None = None,
    key_hint: str | None = None,
    profile: str = "passthrough",
) -> Output:
    """Add an output; with ``backup_url`` also its paired backup-ingest output. Returns the first.
    With ``credential_id`` the URLs carry no key: both outputs use the credential's."""
    now = time.time()
    created = Output(
        id=new_id("out"),
        event_id=event_id,
        tenant_id=tenant_id,
        name=name,
        url=url,
        dest_class=dest_class,
        enabled=True,
        created_at=now,
        preset=preset,
        credential_id=credential_id,
        key_hint=key_hint,
        profile=profile,
    )
    rows = [created]
    if backup_url is not None:
        backup = Output(
            id=new_id("out"),
            event_id=event_id,
            tenant_id=tenant_id,
            name=f"{name} (backup)"[:200],
            url=backup_url,
            dest_class=dest_class,
            enabled=True,
            created_at=now,
            preset=preset,
            pair_id=created.id,
            credential_id=credential_id,
            key_hint=key_hint,
            profile=profile,
        )
        created = dataclasses.replace(created, pair_id=backup.id)
        rows = [created, backup]
    with engine.begin() as conn:
        event = _locked_event(conn, tenant_id, event_id)
        for row in rows:
            conn.execute(db.outputs.insert().values(**row.__dict__))
        _touch(conn, event)
    return created


def _output_row(conn: Connection, tenant_id: str, output_id: str) -> Output:
    row = conn.execute(
        sa.select(db.outputs).where(db.outputs.c.id == output_id, db.outputs.c.tenant_id == tenant_id)
    ).first()
    if row is None:
        raise NotFound("output")
    return _output(row)


def get_output(engine: Engine, tenant_id: str, output_id: str) -> Output:
    with engine.begin() as conn:
        return _output_row(conn, tenant_id, output_id)


def delete_output(engine: Engine, tenant_id: str, output_id: str) -> str:
    """Delete an output; returns its event id."""
    with engine.begin() as conn:
        found = _output_row(conn, tenant_id, output_id)
        event = _locked_event(conn, tenant_id, found.event_id)
        paired = [found.pair_id] if found.pair_id else []  # a paired backup goes with its output
        conn.execute(db.outputs.delete().where(db.outputs.c.id.in_([output_id, *paired])))
        _touch(conn, event)
    return found.event_id


def set_output_enabled(engine: Engine, tenant_id: str, output_id: str, enabled: bool) -> Output:
    with engine.begin() as conn:
        found = _output_row(conn, tenant_id, output_id)
        event = _locked_event(conn, tenant_id, found.event_id)
        values: dict[str, Any] = {}
        if found.enabled != enabled:
            values["enabled"] = enabled
        if enabled and found.auto_disabled:  # re-enabled: a fresh start with a new generation
            values.update(auto_disabled=None, generation=found.generation + 1)
        if values:
            conn.execute(db.outputs.update().where(db.outputs.c.id == output_id).values(**values))
            _touch(conn, event)
        return _output_row(conn, tenant_id, output_id)


def record_auto_disable(engine: Engine, output_id: str, generation: int, reason: str) -> str | None:
    """Remember that a worker auto-disabled an output, so it stays off (across restarts too) until
    re-enabled. Ignored for a report about an older generation or an output no longer enabled.
    Returns the event id when the desired state changed."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(db.outputs).where(db.outputs.c.id == output_id)).first()
        if row is None:
            return None
        found = _output(row)
        if found.generation != generation or not found.enabled or found.auto_disabled:
            return None
        event = _locked_event(conn, found.tenant_id, found.event_id)
        update = db.outputs.update().where(db.outputs.c.id == output_id)
        conn.execute(update.values(auto_disabled=reason[:500]))
        _touch(conn, event)
        return found.event_id


def outputs_with_credential(engine: Engine, tenant_id: str, credential_id: str) -> list[Output]:
    """The tenant's outputs that take their key from ``credential_id``."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(db.outputs).where(
                db.outputs.c.tenant_id == tenant_id, db.outputs.c.credential_id == credential_id
            )
        )
        return [_output(r) for r in rows]


def set_key_hint(engine: Engine, tenant_id: str, credential_id: str, hint: str) -> None:
    """After a rotation: the new hint on the outputs whose key was split off into ``credential_id``."""
    with engine.begin() as conn:
        conn.execute(
            db.outputs.update()
            .where(
                db.outputs.c.tenant_id == tenant_id,
                db.outputs.c.credential_id == credential_id,
                db.outputs.c.key_hint.is_not(None),
            )
            .values(key_hint=hint)
        )


def outputs_with_keys(engine: Engine) -> list[Output]:
    """Outputs whose URL still carries its key (stored before the vault held keys)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(db.outputs).where(db.outputs.c.credential_id.is_(None)))
        return [_output(r) for r in rows]


def attach_credential(engine: Engine, row: Output, url: str, credential_id: str, key_hint: str) -> bool:
    """Swap a row's keyed URL for the URL without the key and the vault credential; False if the row
    changed since it was read."""
    with engine.begin() as conn:
        result = conn.execute(
            db.outputs.update()
            .where(
                db.outputs.c.id == row.id, db.outputs.c.url == row.url, db.outputs.c.credential_id.is_(None)
            )
            .values(url=url, credential_id=credential_id, key_hint=key_hint)
        )
        if result.rowcount != 1:
            return False
        _touch(conn, _locked_event(conn, row.tenant_id, row.event_id))
        return True
