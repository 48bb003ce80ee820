"""The orchestrator's tables (SQLAlchemy Core) and its engine.

These are the tables as the code uses them today; ``migrations.py`` is what creates and changes them
in a database, and a test checks that the two agree. Times are Unix seconds (floats) so SQLite and
PostgreSQL store them the same way.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()

DEFAULT_TENANT_ID = "tn_default"
ADMIN_KEY_ID = "key_admin"

tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex, never the key
    sa.Column("is_admin", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),  # bumped on every change of desired state
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("failover", sa.Text, nullable=False, server_default=""),  # FailoverPolicy JSON; "" = defaults
    sa.Column("locked_input", sa.String(64), nullable=False, server_default=""),  # "" = automatic
    # rollback mode: what to restore when it is turned off (JSON; "" = off)
    sa.Column("rollback", sa.Text, nullable=False, server_default=""),
)

inputs = sa.Table(
    "inputs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("event_id", sa.String(64), sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("protocol", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex of the stream key
    sa.Column("key_hint", sa.String(8), nullable=False),  # its last four characters
    sa.Column("created_at", sa.Float, nullable=False),
    # SRT: key length and latency; an encrypted input's passphrase is in the vault (``credential_id``,
    # bumped ``credential_version`` on a rotation). ``passphrase`` holds one only in a database from
    # before that, until the orchestrator's start moves it to the vault and clears it.
    sa.Column("passphrase", sa.String(79), nullable=False, server_default=""),
    sa.Column("pbkeylen", sa.Integer, nullable=False, server_default="0"),
    sa.Column("latency_ms", sa.Integer, nullable=False, server_default="120"),
    sa.Column("credential_id", sa.String(64), nullable=True),
    sa.Column("credential_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("passphrase_hint", sa.String(16), nullable=False, server_default=""),
    sa.UniqueConstraint("event_id", "role", name="uq_inputs_event_role"),
)

outputs = sa.Table(
    "outputs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column(
        "event_id", sa.String(64), sa.ForeignKey("events.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("url", sa.String(2048), nullable=False),  # without the key when credential_id is set
    sa.Column("dest_class", sa.String(1), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("preset", sa.String(32), nullable=True),  # platform preset the URL was built or checked by
    sa.Column("pair_id", sa.String(64), nullable=True),  # its paired backup-ingest output, both ways
    sa.Column("auto_disabled", sa.String(500), nullable=True),  # why an output worker auto-disabled it
    sa.Column("generation", sa.Integer, nullable=False, server_default="0"),  # bumped on each re-enable
    # the vault credential holding the key: then ``url`` has no key; key_hint shows its last four characters
    sa.Column("credential_id", sa.String(64), nullable=True),
    sa.Column("key_hint", sa.String(16), nullable=True),
    sa.Column("profile", sa.String(48), nullable=False, server_default="passthrough"),  # encoding profile
)

profiles = sa.Table(  # a tenant's own encoding profiles (built-ins live in services.transcode.profiles)
    "profiles",
    metadata,
    sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), primary_key=True),
    sa.Column("name", sa.String(48), primary_key=True),
    sa.Column("definition", sa.Text, nullable=False),  # ProfileSpec JSON
    sa.Column("created_at", sa.Float, nullable=False),
)


_STARTUP_LOCK_KEY = 0x66616E6F7574  # "fanout"


def startup_lock(conn: sa.Connection) -> None:
    """Serialise concurrent starters (migrations, bootstrap) for the rest of this transaction.

    On SQLite the ``BEGIN IMMEDIATE`` of every transaction already does it.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _STARTUP_LOCK_KEY})


def _enable_wal(cursor: Any) -> None:
    """Switching a new database to WAL needs a moment alone with it and does not wait on the busy
    timeout: several processes starting at once retry instead of failing with "database is locked"."""
    for _ in range(200):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA journal_mode=WAL")


def create_engine(url: str) -> Engine:
    """An engine whose transactions are real transactions on SQLite too (BEGIN IMMEDIATE, DDL included)."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling skips BEGIN before DDL and commits behind our back;
        # turn it off and begin ourselves (SQLAlchemy's documented recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        _enable_wal(cursor)
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(conn: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front, so two writers queue instead of deadlocking.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
