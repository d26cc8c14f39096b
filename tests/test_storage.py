"""Storage layer on both backends: migrations, model sync, types, constraints, SQLite locking."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from relay.devservers.postgres import PrivatePostgres
from storage import db as db_module
from storage.db import alembic_config, make_engine, migrate, session_factory
from storage.models import Alert, Base, ClassificationRecord, Delivery, Message
from tests.fixtures.common import require_or_skip

T0 = datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=UTC)
RAW_BYTES = bytes(range(256)) * 2 + b"\x00\r\n.\r\n\xff\x00"
MESSAGES = Base.metadata.tables["messages"]
UNICODE = "Inbraak in de schuur — Ünïcødé ✓ 's-Hertogenbosch 🚲"


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    """A migrated engine on each backend."""
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


# -- migrations ----------------------------------------------------------------


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_migrations_apply_from_empty_and_are_idempotent(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert inspect(engine).get_table_names() == []
        head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
        migrate(engine)
        expected = set(Base.metadata.tables) | {"alembic_version"}
        assert set(inspect(engine).get_table_names()) == expected
        assert _revision(engine) == head
        migrate(engine)
        assert _revision(engine) == head
        assert set(inspect(engine).get_table_names()) == expected
    finally:
        engine.dispose()


def test_models_and_migrations_are_in_sync(db: Engine) -> None:
    with db.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_model_drift_would_be_detected(db: Engine) -> None:
    """The sync check above is not vacuous: an extra model column shows up as a difference."""
    drifted = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["messages"].append_column(Column("not_migrated", Integer()))
    with db.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), drifted)
    assert [d[0] for d in differences] == ["add_column"]


def test_sqlite_table_rebuild_in_a_migration_keeps_child_rows(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch migration copies, drops and renames a table; no cascade may fire on the drop."""
    factory = session_factory(engine)
    with factory() as session, session.begin():
        message = _message(session, dedup_key="g" * 64)
        session.add(_classification(message.id))
    migrations = tmp_path / "migrations"
    shutil.copytree(db_module.MIGRATIONS, migrations)
    head = ScriptDirectory.from_config(db_module.alembic_config(engine)).get_current_head()
    (migrations / "versions" / "9999_rebuild.py").write_text(REBUILD_MIGRATION.replace("HEAD", str(head)))
    monkeypatch.setattr(db_module, "MIGRATIONS", migrations)
    migrate(engine)
    with factory() as session:
        assert [c.message_id for c in session.scalars(select(ClassificationRecord))] == [message.id]
    with engine.connect() as conn:
        assert "rebuilt" in {c["name"] for c in inspect(conn).get_columns("messages")}


REBUILD_MIGRATION = """
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = "HEAD"


def upgrade() -> None:
    with op.batch_alter_table("messages", recreate="always") as batch_op:
        batch_op.add_column(sa.Column("rebuilt", sa.Integer(), nullable=True))
"""


# -- every table round-trips -----------------------------------------------------


def _sample(column: Column[Any], table: Table) -> Any:
    """A demanding value for ``column``: non-ASCII text, raw bytes, offset times."""
    kind = column.type
    if isinstance(kind, LargeBinary):
        return RAW_BYTES
    if isinstance(kind, JSON):
        return {"list": [1, 2.5, "ë", None, True], "nested": {"wijk": UNICODE}}
    if isinstance(kind, DateTime) or getattr(kind, "impl", None).__class__ is DateTime:
        # Given in +01:00; must come back as the same instant, in UTC.
        return T0.astimezone(timezone(timedelta(hours=1)))
    if isinstance(kind, Integer):
        if column.primary_key or column.foreign_keys:
            return 1
        return 2**40 + 7 if isinstance(kind, BigInteger) else 2**31 - 1
    if isinstance(kind, Text):
        return f"{UNICODE}\n\nline two\ttab"
    if isinstance(kind, String):
        value = f"{table.name}.{column.name} {UNICODE}"
        return value[: kind.length] if kind.length else value
    raise AssertionError(f"no sample for {table.name}.{column.name} ({kind!r})")


@pytest.mark.parametrize("table_name", sorted(Base.metadata.tables))
def test_every_table_round_trips(db: Engine, table_name: str) -> None:
    # Fill every table in dependency order so foreign keys (all to id 1) resolve.
    rows: dict[str, dict[str, Any]] = {}
    with db.begin() as conn:
        _odd_session_timezone(conn)
        for table in Base.metadata.sorted_tables:
            rows[table.name] = {c.name: _sample(c, table) for c in table.columns}
            conn.execute(table.insert().values(rows[table.name]))
    table = Base.metadata.tables[table_name]
    with db.connect() as conn:
        _odd_session_timezone(conn)
        stored = conn.execute(select(table)).mappings().one()
    for name, sent in rows[table_name].items():
        got = stored[name]
        assert got == sent, name
        if isinstance(sent, datetime):
            assert got.utcoffset() == timedelta(0), f"{name} did not come back in UTC"
        if isinstance(sent, bytes):
            assert isinstance(got, bytes), name


def test_orm_round_trip_of_lists_bytes_and_aware_times(db: Engine) -> None:
    factory = session_factory(db)
    with factory() as session, session.begin():
        message = _message(session, dedup_key="a" * 64)
        message.raw = RAW_BYTES
        session.add(_classification(message.id, wards=["maaspoort", "de-muntel"]))
    with factory() as session:
        got = session.scalars(select(Message)).one()
        assert got.raw == RAW_BYTES
        assert got.received_at == T0 and got.received_at.tzinfo is not None
        assert got.classification is not None
        assert got.classification.wards == ["maaspoort", "de-muntel"]
        assert got.classification.explanation == ["regel ✓"]


def test_naive_datetimes_are_refused(db: Engine) -> None:
    factory = session_factory(db)
    message = _message(None, dedup_key="b" * 64)
    message.received_at = datetime(2026, 11, 23, 9, 0)
    with pytest.raises(StatementError, match="naive datetime"), factory() as session:
        session.add(message)
        session.commit()
    with factory() as session:
        assert session.scalars(select(Message)).all() == []


# -- constraints -------------------------------------------------------------------


def test_duplicate_dedup_key_is_refused(db: Engine) -> None:
    factory = session_factory(db)
    with factory() as session, session.begin():
        _message(session, dedup_key="c" * 64)
    with pytest.raises(IntegrityError), factory() as session, session.begin():
        _message(session, dedup_key="c" * 64)


def test_one_delivery_per_alert_and_recipient(db: Engine) -> None:
    factory = session_factory(db)
    with factory() as session, session.begin():
        alert = _alert(session)
        session.add(_delivery(alert.id, "lid@example.org"))
        session.add(_delivery(alert.id, "ander@example.org"))
    with pytest.raises(IntegrityError), factory() as session, session.begin():
        session.add(_delivery(alert.id, "lid@example.org"))
    # Notices have no alert: the same coordinator may get many of them.
    with factory() as session, session.begin():
        session.add(_delivery(None, "coord@example.org"))
        session.add(_delivery(None, "coord@example.org"))


def test_foreign_keys_are_enforced(db: Engine) -> None:
    factory = session_factory(db)
    with pytest.raises(IntegrityError), factory() as session, session.begin():
        session.add(_classification(message_id=999_999))


def test_deleting_a_message_cascades_to_its_classification(db: Engine) -> None:
    factory = session_factory(db)
    with factory() as session, session.begin():
        message = _message(session, dedup_key="d" * 64)
        session.add(_classification(message.id))
    with db.begin() as conn:
        conn.execute(MESSAGES.delete())
    with factory() as session:
        assert session.scalars(select(ClassificationRecord)).all() == []


# -- SQLite specifics ------------------------------------------------------------


def test_sqlite_pragmas(engine: Engine) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert (conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) >= 5_000


def test_sqlite_in_memory_url_creates_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url in ("sqlite://", "sqlite:///:memory:"):
        engine = make_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
        engine.dispose()
    assert list(tmp_path.iterdir()) == []


def test_sqlite_writer_waits_for_a_locked_database(engine: Engine, sqlite_url: str) -> None:
    """Another connection holds the write lock ~1.5 s; a second engine's write then succeeds."""
    hold_s = 1.5
    locked, failures = threading.Event(), []

    def hold_lock() -> None:
        try:
            with engine.begin() as conn:  # BEGIN IMMEDIATE: the write lock
                conn.execute(MESSAGES.insert().values(_message_row("e" * 64)))
                locked.set()
                time.sleep(hold_s)
        except Exception as error:  # noqa: BLE001 - asserted on below
            failures.append(error)
            locked.set()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    other = make_engine(sqlite_url)
    try:
        assert locked.wait(10)
        started = time.monotonic()
        with other.begin() as conn:
            conn.execute(MESSAGES.insert().values(_message_row("f" * 64)))
        waited = time.monotonic() - started
    finally:
        holder.join(10)
        other.dispose()
    assert failures == []
    assert 0.5 < waited < 10
    with engine.connect() as conn:
        assert conn.execute(select(Message.dedup_key)).scalars().all() == ["e" * 64, "f" * 64]


# -- the fixtures themselves ------------------------------------------------------


@pytest.mark.postgres
def test_private_postgres_databases_and_cleanup(postgres_server: PrivatePostgres) -> None:
    url = postgres_server.create_database("fixture_check")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == "fixture_check"
    finally:
        engine.dispose()
    postgres_server.drop_database("fixture_check")
    with PrivatePostgres() as private:
        workdir = private.workdir
        assert workdir is not None and workdir.is_dir()
        assert private.url.startswith("postgresql+psycopg://binrelay@127.0.0.1:")
    assert not private.running and not workdir.exists()


def test_require_or_skip_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BINRELAY_REQUIRE_EXAMPLE", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_or_skip("example server", "BINRELAY_REQUIRE_EXAMPLE")
    monkeypatch.setenv("BINRELAY_REQUIRE_EXAMPLE", "1")
    with pytest.raises(pytest.fail.Exception, match="BINRELAY_REQUIRE_EXAMPLE=1"):
        require_or_skip("example server", "BINRELAY_REQUIRE_EXAMPLE")


# -- helpers ---------------------------------------------------------------------


def _odd_session_timezone(conn: Connection) -> None:
    """On PostgreSQL, a session time zone of UTC-03:30 must not shift stored instants."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TIME ZONE 'America/St_Johns'")


def _message_row(dedup_key: str) -> dict[str, Any]:
    return {
        "dedup_key": dedup_key,
        "origin": "imap:INBOX",
        "received_at": T0,
        "size": 10,
        "status": "new",
    }


def _message(session: Session | None, dedup_key: str) -> Message:
    """A minimal message; added and flushed (so it has an id) when a session is given."""
    message = Message(**_message_row(dedup_key))
    if session is not None:
        session.add(message)
        session.flush()
    return message


def _classification(message_id: int, wards: list[Any] | None = None) -> ClassificationRecord:
    return ClassificationRecord(
        message_id=message_id,
        source="member",
        kind="report",
        wards=wards or [],
        explanation=["regel ✓"],
        created_at=T0,
    )


def _alert(session: Session) -> Alert:
    alert = Alert(
        source="police",
        source_label="Politie Oost-Brabant",
        subject="Inbraak",
        message_id_header="<a1@bin.example.org>",
        tag="t" * 32,
        created_at=T0,
    )
    session.add(alert)
    session.flush()
    return alert


def _delivery(alert_id: int | None, recipient: str) -> Delivery:
    return Delivery(alert_id=alert_id, recipient=recipient, next_attempt_at=T0, created_at=T0)
