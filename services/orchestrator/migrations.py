"""A small versioned schema migration runner for SQLite and PostgreSQL.

Every migration is a numbered step with its own frozen table definitions (never ``db.metadata``:
that is the schema of today, and a step must keep doing what it did when it was written). All
pending steps run in one transaction together with their ``schema_version`` rows, so a failure
leaves the schema as it was. Concurrent starters are serialised: by an advisory lock on
PostgreSQL, by ``BEGIN IMMEDIATE`` on SQLite; the second one then finds nothing left to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import db

log = logging.getLogger(__name__)

schema_version = sa.Table(
    "schema_version",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "tenants",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    sa.Table(
        "api_keys",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    sa.Table(
        "events",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    sa.Table(
        "inputs",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(64), sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("key_hint", sa.String(8), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("event_id", "role", name="uq_inputs_event_role"),
    )
    sa.Table(
        "outputs",
        md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "event_id",
            sa.String(64),
            sa.ForeignKey("events.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, index=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("dest_class", sa.String(1), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    md.create_all(conn)


def _v3_failover(conn: Connection) -> None:
    for ddl in (
        "ALTER TABLE events ADD COLUMN failover TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE events ADD COLUMN locked_input VARCHAR(64) NOT NULL DEFAULT ''",
    ):
        conn.execute(sa.text(ddl))


def _v2_output_policy(conn: Connection) -> None:
    for ddl in (
        "ALTER TABLE outputs ADD COLUMN preset VARCHAR(32)",
        "ALTER TABLE outputs ADD COLUMN pair_id VARCHAR(64)",
        "ALTER TABLE outputs ADD COLUMN auto_disabled VARCHAR(500)",
        "ALTER TABLE outputs ADD COLUMN generation INTEGER NOT NULL DEFAULT 0",
    ):
        conn.execute(sa.text(ddl))


def _v4_srt_inputs(conn: Connection) -> None:
    for ddl in (
        "ALTER TABLE inputs ADD COLUMN passphrase VARCHAR(79) NOT NULL DEFAULT ''",
        "ALTER TABLE inputs ADD COLUMN pbkeylen INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE inputs ADD COLUMN latency_ms INTEGER NOT NULL DEFAULT 120",
    ):
        conn.execute(sa.text(ddl))


def _v5_output_credentials(conn: Connection) -> None:
    for ddl in (
        "ALTER TABLE outputs ADD COLUMN credential_id VARCHAR(64)",
        "ALTER TABLE outputs ADD COLUMN key_hint VARCHAR(16)",
    ):
        conn.execute(sa.text(ddl))


def _v6_profiles(conn: Connection) -> None:
    conn.execute(sa.text("ALTER TABLE outputs ADD COLUMN profile VARCHAR(48) NOT NULL DEFAULT 'passthrough'"))
    conn.execute(sa.text("ALTER TABLE events ADD COLUMN rollback TEXT NOT NULL DEFAULT ''"))
    md = sa.MetaData()
    sa.Table("tenants", md, sa.Column("id", sa.String(64), primary_key=True))
    sa.Table(
        "profiles",
        md,
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), primary_key=True),
        sa.Column("name", sa.String(48), primary_key=True),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    md.tables["profiles"].create(conn)


def _v7_input_credentials(conn: Connection) -> None:
    for ddl in (
        "ALTER TABLE inputs ADD COLUMN credential_id VARCHAR(64)",
        "ALTER TABLE inputs ADD COLUMN credential_version INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE inputs ADD COLUMN passphrase_hint VARCHAR(16) NOT NULL DEFAULT ''",
    ):
        conn.execute(sa.text(ddl))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial: tenants, api keys, events, inputs, outputs", _v1_initial),
    Migration(2, "outputs: platform preset, paired backup, auto-disable, generation", _v2_output_policy),
    Migration(3, "events: failover policy and input lock", _v3_failover),
    Migration(4, "inputs: SRT passphrase, key length and latency", _v4_srt_inputs),
    Migration(5, "outputs: vault credential reference and key hint", _v5_output_credentials),
    Migration(6, "outputs: encoding profile; tenants' own profiles; events: rollback mode", _v6_profiles),
    Migration(7, "inputs: SRT passphrase as a vault credential reference", _v7_input_credentials),
)


def migrate(engine: Engine, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply every pending migration in order; returns the versions applied (empty when up to date)."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError("migration versions must be unique and in ascending order")
    applied_now: list[int] = []
    with engine.begin() as conn:
        db.startup_lock(conn)
        schema_version.create(conn, checkfirst=True)
        done = set(conn.scalars(sa.select(schema_version.c.version)))
        for migration in migrations:
            if migration.version in done:
                continue
            migration.apply(conn)
            conn.execute(
                schema_version.insert().values(
                    version=migration.version, name=migration.name, applied_at=time.time()
                )
            )
            applied_now.append(migration.version)
            log.info("db.migrated", extra={"version": migration.version, "migration": migration.name})
    return applied_now


def current_version(engine: Engine) -> int:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("schema_version"):
            return 0
        return int(conn.scalar(sa.select(sa.func.max(schema_version.c.version))) or 0)
