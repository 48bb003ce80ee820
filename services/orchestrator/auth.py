"""API keys: random secrets stored only as sha256 hashes, bearer parsing, admin versus tenant keys.

A key is looked up by its hash, so the database never holds anything a caller could present. The
admin key belongs to the default tenant; ``FANOUT_ADMIN_KEY`` is authoritative when set (its hash
replaces the stored one), otherwise one is generated on first run and handed back to be shown once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from shared.ids import new_id, new_secret

from . import db

log = logging.getLogger(__name__)

KEY_PREFIX = "fo_"
MIN_ADMIN_KEY_LENGTH = 16


@dataclass(frozen=True)
class Principal:
    key_id: str
    tenant_id: str
    is_admin: bool


@dataclass(frozen=True)
class IssuedKey:
    id: str
    tenant_id: str
    key: str = ""  # shown once, never stored
    created_at: float = 0.0

    def __repr__(self) -> str:
        return f"IssuedKey(id={self.id!r}, tenant_id={self.tenant_id!r}, key='<redacted>')"


def hash_secret(secret: str) -> str:
    """sha256 hex: how API keys and stream keys are stored and compared."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + new_secret(32)


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def lookup(engine: Engine, token: str) -> Principal | None:
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(db.api_keys.c.id, db.api_keys.c.tenant_id, db.api_keys.c.is_admin).where(
                db.api_keys.c.key_hash == hash_secret(token)
            )
        ).first()
    if row is None:
        return None
    return Principal(key_id=row.id, tenant_id=row.tenant_id, is_admin=bool(row.is_admin))


def issue_key(engine: Engine, tenant_id: str) -> IssuedKey | None:
    """A new tenant key, or None when the tenant does not exist."""
    key = new_api_key()
    issued = IssuedKey(id=new_id("key"), tenant_id=tenant_id, key=key, created_at=time.time())
    with engine.begin() as conn:
        if (
            conn.scalar(sa.select(db.tenants.c.id).where(db.tenants.c.id == tenant_id).with_for_update())
            is None
        ):
            return None
        conn.execute(
            db.api_keys.insert().values(
                id=issued.id,
                tenant_id=tenant_id,
                key_hash=hash_secret(key),
                is_admin=False,
                created_at=issued.created_at,
            )
        )
    return issued


def ensure_admin(engine: Engine, configured_key: str | None) -> str | None:
    """Make sure the default tenant and the admin key exist; returns a newly generated key to show once."""
    now = time.time()
    if configured_key is not None and len(configured_key) < MIN_ADMIN_KEY_LENGTH:
        log.warning("admin_key.weak", extra={"min_length": MIN_ADMIN_KEY_LENGTH})
    generated: str | None = None
    with engine.begin() as conn:
        db.startup_lock(conn)
        if conn.scalar(sa.select(db.tenants.c.id).where(db.tenants.c.id == db.DEFAULT_TENANT_ID)) is None:
            conn.execute(db.tenants.insert().values(id=db.DEFAULT_TENANT_ID, name="default", created_at=now))
        stored = conn.scalar(sa.select(db.api_keys.c.key_hash).where(db.api_keys.c.id == db.ADMIN_KEY_ID))
        if configured_key is not None:
            wanted = hash_secret(configured_key)
            if stored is None:
                conn.execute(
                    db.api_keys.insert().values(
                        id=db.ADMIN_KEY_ID,
                        tenant_id=db.DEFAULT_TENANT_ID,
                        key_hash=wanted,
                        is_admin=True,
                        created_at=now,
                    )
                )
            elif stored != wanted:
                conn.execute(
                    db.api_keys.update().where(db.api_keys.c.id == db.ADMIN_KEY_ID).values(key_hash=wanted)
                )
                log.info("admin_key.replaced")
        elif stored is None:
            generated = new_api_key()
            conn.execute(
                db.api_keys.insert().values(
                    id=db.ADMIN_KEY_ID,
                    tenant_id=db.DEFAULT_TENANT_ID,
                    key_hash=hash_secret(generated),
                    is_admin=True,
                    created_at=now,
                )
            )
    return generated
