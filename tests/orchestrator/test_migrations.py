"""The migration runner: applies once, is a no-op after, serialises concurrent starters, rolls back whole."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from services.orchestrator import auth, db, migrations

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def url(tmp_path: Path, database_url: str | None) -> str:
    return database_url or f"sqlite:///{tmp_path / 'fanout.db'}"


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = db.create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def schema(engine: Engine) -> dict[str, dict[str, bool]]:
    inspector = sa.inspect(engine)
    return {
        table: {col["name"]: bool(col["nullable"]) for col in inspector.get_columns(table)}
        for table in sorted(inspector.get_table_names())
    }


def test_migrating_twice_is_a_no_op(engine: Engine) -> None:
    assert migrations.current_version(engine) == 0
    assert migrations.migrate(engine) == [m.version for m in migrations.MIGRATIONS]
    first = schema(engine)
    assert migrations.migrate(engine) == []
    assert schema(engine) == first
    assert migrations.current_version(engine) == migrations.MIGRATIONS[-1].version


def test_migrations_build_the_schema_the_code_uses(engine: Engine) -> None:
    migrations.migrate(engine)
    migrated = schema(engine)
    migrated.pop("schema_version")
    expected = {
        table.name: {col.name: bool(col.nullable) for col in table.columns}
        for table in db.metadata.sorted_tables
    }
    assert migrated == expected
    inspector = sa.inspect(engine)
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("inputs")}
    indexes = {tuple(i["column_names"]) for i in inspector.get_indexes("inputs") if i.get("unique")}
    assert ("event_id", "role") in uniques | indexes


def test_concurrent_starters_apply_each_migration_once(url: str) -> None:
    engines = [db.create_engine(url) for _ in range(4)]
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def run(engine: Engine) -> None:
        try:
            barrier.wait()
            results.append(migrations.migrate(engine))
            auth.ensure_admin(engine, None)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert errors == []
        assert sorted(results, key=len) == [[], [], [], [m.version for m in migrations.MIGRATIONS]]
        with engines[0].connect() as conn:
            assert conn.scalar(sa.select(sa.func.count()).select_from(db.api_keys)) == 1
    finally:
        for e in engines:
            e.dispose()


def test_a_failing_migration_leaves_nothing_behind(engine: Engine) -> None:
    migrations.migrate(engine)

    def half_done(conn: Connection) -> None:
        conn.execute(sa.text("CREATE TABLE half_done (id INTEGER PRIMARY KEY)"))
        raise RuntimeError("step failed")

    broken = (*migrations.MIGRATIONS, migrations.Migration(99, "broken", half_done))
    with pytest.raises(RuntimeError):
        migrations.migrate(engine, broken)
    assert "half_done" not in sa.inspect(engine).get_table_names()
    assert migrations.current_version(engine) == migrations.MIGRATIONS[-1].version


def test_out_of_order_migrations_are_refused(engine: Engine) -> None:
    with pytest.raises(ValueError):
        migrations.migrate(
            engine, tuple(reversed((*migrations.MIGRATIONS, migrations.Migration(99, "x", print))))
        )


def test_admin_key_bootstrap(engine: Engine) -> None:
    migrations.migrate(engine)
    generated = auth.ensure_admin(engine, None)
    assert generated is not None and generated.startswith(auth.KEY_PREFIX)
    assert auth.ensure_admin(engine, None) is None, "shown once: not generated again"
    assert auth.lookup(engine, generated) == auth.Principal(db.ADMIN_KEY_ID, db.DEFAULT_TENANT_ID, True)
    # a configured key is authoritative: it replaces the generated one
    assert auth.ensure_admin(engine, "configured-admin-key-123") is None
    assert auth.lookup(engine, generated) is None
    assert auth.lookup(engine, "configured-admin-key-123") is not None
