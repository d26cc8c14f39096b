"""Rate-limit counting (storage.limits), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from storage.db import make_engine, migrate, session_factory
from storage.limits import address_key, count, forget, window

HOUR = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
FLOOD = address_key("flood@example.org")


def test_counts_grow_per_sender_and_hour(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    with sessions() as session, session.begin():
        counts = [count(session, "sender_hour", FLOOD, HOUR) for _ in range(3)]
        other = count(session, "sender_hour", address_key("calm@example.org"), HOUR)
        next_hour = count(session, "sender_hour", FLOOD, HOUR.replace(hour=11))
        other_limit = count(session, "member_answers", FLOOD, HOUR)
    assert counts == [1, 2, 3]
    assert (other, next_hour, other_limit) == (1, 1, 1)
    with sessions() as session:
        row = window(session, "sender_hour", FLOOD, HOUR)
        assert row is not None and row.count == 3
    engine.dispose()


def test_no_address_is_stored_and_an_erased_address_is_forgotten(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    with sessions() as session, session.begin():
        count(session, "sender_hour", FLOOD, HOUR)
        count(session, "member_answers", FLOOD, HOUR)
        count(session, "sender_hour", address_key("calm@example.org"), HOUR)
    assert "flood@example.org" not in FLOOD and address_key(" Flood@Example.org ") == FLOOD
    with sessions() as session, session.begin():
        assert forget(session, "FLOOD@example.org") == 2
    with sessions() as session:
        assert window(session, "sender_hour", FLOOD, HOUR) is None
        assert window(session, "sender_hour", address_key("calm@example.org"), HOUR) is not None
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
                    count(session, "sender_hour", FLOOD, HOUR)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=count_twenty) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    with sessions() as session:
        row = window(session, "sender_hour", FLOOD, HOUR)
        assert row is not None and row.count == 80
    engine.dispose()
