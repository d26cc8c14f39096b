"""Engines, sessions and migrations.

SQLite is the single-process default (WAL, foreign keys on, a busy timeout so a
briefly locked database waits instead of failing); PostgreSQL through psycopg 3
serves several processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, func, inspect, make_url, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    # Take the write lock at BEGIN: two writers then queue on busy_timeout
    # instead of one failing with "database is locked" on upgrade.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; creates the folder of a SQLite file."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    if (
        parsed.database
        and parsed.database != ":memory:"
        and not parsed.database.startswith("file:")
    ):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    connect_args = {
        "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
        "isolation_level": None,
        **kwargs.pop("connect_args", {}),
    }
    engine = create_engine(url, connect_args=connect_args, **kwargs)
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin_immediate)
    return engine


def rowcount(result: Any) -> int:
    """How many rows an UPDATE or DELETE changed (0 where the driver does not say)."""
    return int(getattr(result, "rowcount", 0) or 0)


def has_table(engine: Engine, name: str) -> bool:
    """Whether the database already holds table ``name`` (nothing is created)."""
    return inspect(engine).has_table(name)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


# The advisory lock key routing decisions take turns on ("binr").
DECISIONS_LOCK = 0x62696E72


def decisions_in_turn(session: Session) -> None:
    """Until this transaction ends, other processes' transactions that call this wait.

    What a routed message does depends on what is already there (an item to
    merge with, a member who just joined, an answer already given), so those
    decisions take turns across processes; the costly part before it (parsing,
    classifying) does not. PostgreSQL: a transaction-level advisory lock.
    SQLite: transactions begin IMMEDIATE, which already takes turns.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(DECISIONS_LOCK)))


def alembic_config(engine: Engine) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    if engine.dialect.name != "sqlite" or _in_memory(engine):
        command.upgrade(alembic_config(engine), "head")
        return
    # SQLite batch migrations rebuild a table (copy, DROP, rename). With foreign
    # keys on, that DROP would cascade to the child rows, so migrate on a
    # connection with them off and check the result before anyone uses it.
    migration_engine = make_engine(
        engine.url.render_as_string(hide_password=False), poolclass=NullPool
    )
    event.listen(migration_engine, "connect", _sqlite_foreign_keys_off)
    try:
        command.upgrade(alembic_config(migration_engine), "head")
        with migration_engine.connect() as conn:
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"migration left rows with dangling foreign keys: {broken[:5]}")
    finally:
        migration_engine.dispose()


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands, found without creating or changing anything."""

    exists: bool
    revision: str | None  # None: no binrelay tables yet
    head: str

    @property
    def current(self) -> bool:
        return self.exists and self.revision == self.head

    def describe(self) -> str:
        if not self.exists:
            return "no database yet"
        if self.revision is None:
            return "no binrelay tables yet"
        if self.revision != self.head:
            return f"schema at revision {self.revision}, this binrelay needs {self.head}"
        return f"schema current (revision {self.head})"


def schema_state(url: str) -> SchemaState:
    """The database's schema revision, read only: a SQLite file that is not there is not created."""
    scripts = AlembicConfig()
    scripts.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(scripts).get_current_head() or ""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:" \
            and not parsed.database.startswith("file:") and not Path(parsed.database).exists():
        return SchemaState(False, None, head)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return SchemaState(True, revision, head)


def _sqlite_foreign_keys_off(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=OFF")
    cursor.close()


def _in_memory(engine: Engine) -> bool:
    database = engine.url.database or ""
    return database in ("", ":memory:") or "mode=memory" in database


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    with factory() as session, session.begin():
        yield session
