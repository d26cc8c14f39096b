"""Per-sender counting for flood limiting, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from storage.db import make_engine, migrate, session_factory
from storage.windows import count_message, window

HOUR = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_counts_grow_per_sender_and_hour(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    with sessions() as session, session.begin():
        counts = [count_message(session, "flood@example.org", HOUR) for _ in range(3)]
        other = count_message(session, "calm@example.org", HOUR)
        next_hour = count_message(session, "flood@example.org", HOUR.replace(hour=11))
    assert counts == [1, 2, 3]
    assert (other, next_hour) == (1, 1)
    with sessions() as session:
        row = window(session, "flood@example.org", HOUR)
        assert row is not None and row.count == 3
    engine.dispose()


def test_concurrent_counting_loses_nothing(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    errors: list[BaseException] = []

    def count_twenty() -> None:
        try:
            for _ in range(20):
                with sessions() as session, session.begin():
                    count_message(session, "flood@example.org", HOUR)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=count_twenty) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with sessions() as session:
        row = window(session, "flood@example.org", HOUR)
        assert row is not None and row.count == 80
    engine.dispose()
