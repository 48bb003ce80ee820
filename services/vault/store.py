"""The vault's own tables and their migrations, and credential rows with optimistic concurrency.

The vault may share the orchestrator's database (the embedded default) or have its own
(``FANOUT_VAULT_DATABASE_URL``); either way its tables are its own, created by its own migration list
with its own ``vault_schema_version`` table. Every change of a row names the version it read and bumps
it (``UPDATE ... WHERE version = :read``): of two concurrent changes one wins, the other gets
``Conflict`` and nothing is lost. These functions block; the service runs them in a thread.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .envelope import Sealed

log = logging.getLogger(__name__)

metadata = sa.MetaData()

credentials = sa.Table(
    "vault_credentials",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("preset", sa.String(32), nullable=False),
    sa.Column("hint", sa.String(16), nullable=False),
    sa.Column("master_version", sa.Integer, nullable=False),
    sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("last_error", sa.String(500), nullable=False),
    sa.Column("verified_at", sa.Float, nullable=False),
    sa.Column("probed", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

master_key_states = sa.Table(
    "vault_master_keys",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("state", sa.String(16), nullable=False),  # "active" (usable) or "retired"
    sa.Column("changed_at", sa.Float, nullable=False),
)

schema_version = sa.Table(
    "vault_schema_version",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)


def _v1_initial(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "vault_credentials",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("preset", sa.String(32), nullable=False),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("master_version", sa.Integer, nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=False),
        sa.Column("verified_at", sa.Float, nullable=False),
        sa.Column("probed", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    sa.Table(
        "vault_master_keys",
        md,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("changed_at", sa.Float, nullable=False),
    )
    md.create_all(conn)


MIGRATIONS: tuple[tuple[int, str, Callable[[Connection], None]], ...] = (
    (1, "vault: credentials and master key states", _v1_initial),
)


def migrate(engine: Engine) -> list[int]:
    applied: list[int] = []
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": 0x7661756C74})  # "vault"
        schema_version.create(conn, checkfirst=True)
        done = set(conn.scalars(sa.select(schema_version.c.version)))
        for version, name, apply in MIGRATIONS:
            if version in done:
                continue
            apply(conn)
            conn.execute(schema_version.insert().values(version=version, name=name, applied_at=time.time()))
            applied.append(version)
            log.info("vault.db_migrated", extra={"version": version, "migration": name})
    return applied


class NotFound(Exception):
    pass


class Conflict(Exception):
    pass


@dataclass(frozen=True)
class Row:
    id: str
    tenant_id: str
    name: str
    kind: str
    preset: str
    hint: str
    master_version: int
    wrapped_key: bytes = dataclasses.field(repr=False)
    ciphertext: bytes = dataclasses.field(repr=False)
    version: int
    status: str
    last_error: str
    verified_at: float
    probed: bool
    created_at: float
    updated_at: float

    @property
    def sealed(self) -> Sealed:
        return Sealed(self.master_version, bytes(self.wrapped_key), bytes(self.ciphertext))


def _row(r: Any) -> Row:
    return Row(**{c: getattr(r, c) for c in credentials.c.keys()})  # noqa: SIM118


def insert(engine: Engine, row: Row) -> Row:
    with engine.begin() as conn:
        conn.execute(credentials.insert().values(**dataclasses.asdict(row)))
    return row


def get(engine: Engine, tenant_id: str, credential_id: str) -> Row:
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(credentials).where(
                credentials.c.id == credential_id, credentials.c.tenant_id == tenant_id
            )
        ).first()
    if found is None:
        raise NotFound(credential_id)
    return _row(found)


def list_for(engine: Engine, tenant_id: str) -> list[Row]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(credentials)
            .where(credentials.c.tenant_id == tenant_id)
            .order_by(credentials.c.created_at, credentials.c.id)
        )
        return [_row(r) for r in rows]


def all_ids(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [
            (r.tenant_id, r.id) for r in conn.execute(sa.select(credentials.c.tenant_id, credentials.c.id))
        ]


def update(engine: Engine, current: Row, **values: Any) -> Row:
    """Change the row as read (``current.version``), bumping the version; Conflict if it changed since."""
    now = time.time()
    changes = {**values, "version": current.version + 1, "updated_at": now}
    with engine.begin() as conn:
        result = conn.execute(
            credentials.update()
            .where(
                credentials.c.id == current.id,
                credentials.c.tenant_id == current.tenant_id,
                credentials.c.version == current.version,
            )
            .values(**changes)
        )
        if result.rowcount != 1:
            exists = conn.scalar(sa.select(credentials.c.version).where(credentials.c.id == current.id))
            if exists is None:
                raise NotFound(current.id)
            raise Conflict(f"credential changed concurrently (version {current.version} -> {exists})")
    return dataclasses.replace(current, **changes)


def set_status(engine: Engine, current: Row, status: str, last_error: str, probed: bool) -> bool:
    """Record a verification of the value as read; ignored (False) if the value changed meanwhile.
    Not a change of the credential: the version stays."""
    with engine.begin() as conn:
        result = conn.execute(
            credentials.update()
            .where(credentials.c.id == current.id, credentials.c.version == current.version)
            .values(status=status, last_error=last_error[:500], probed=probed, verified_at=time.time())
        )
        return bool(result.rowcount == 1)


def delete(engine: Engine, current: Row) -> None:
    with engine.begin() as conn:
        result = conn.execute(
            credentials.delete().where(
                credentials.c.id == current.id,
                credentials.c.tenant_id == current.tenant_id,
                credentials.c.version == current.version,
            )
        )
        if result.rowcount != 1:
            raise Conflict("credential changed concurrently; read it again")


def master_versions_in_use(engine: Engine) -> dict[int, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(credentials.c.master_version, sa.func.count()).group_by(credentials.c.master_version)
        )
        return {int(v): int(n) for v, n in rows}


def retired_versions(engine: Engine) -> frozenset[int]:
    with engine.connect() as conn:
        rows = conn.scalars(
            sa.select(master_key_states.c.version).where(master_key_states.c.state == "retired")
        )
        return frozenset(int(v) for v in rows)


def retire(engine: Engine, versions: set[int]) -> None:
    now = time.time()
    with engine.begin() as conn:
        for version in sorted(versions):
            exists = conn.scalar(
                sa.select(master_key_states.c.version).where(master_key_states.c.version == version)
            )
            if exists is None:
                conn.execute(
                    master_key_states.insert().values(version=version, state="retired", changed_at=now)
                )
            else:
                conn.execute(
                    master_key_states.update()
                    .where(master_key_states.c.version == version)
                    .values(state="retired", changed_at=now)
                )
