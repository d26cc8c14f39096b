"""Ingestor: raw bytes committed once, header fields filled, oversize flagged; Backoff."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from relay.ingest.store import Ingestor, dedup_key, header_fields
from relay.service.backoff import Backoff
from relay.service.clock import FrozenClock
from storage.db import make_engine, migrate, session_factory
from storage.messages import mailbox_state, save_mailbox_state
from storage.models import Message
from tests.mailgen import message

LIMIT = 64 * 1024


@pytest.fixture
def any_sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def _rows(sessions: sessionmaker[Session]) -> list[Message]:
    with sessions() as session:
        return list(session.scalars(select(Message).order_by(Message.id)))


def test_store_commits_raw_bytes_with_header_fields(any_sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    raw = message(
        "Één verdachte auto in Empel", "Kenteken bekend.", sender="Anna Jansen <Anna@Example.NET>",
        message_id="abc@example.net",
    )
    result = Ingestor(any_sessions, clock, LIMIT).store(raw, origin="imap:INBOX", origin_ref="7:1")
    assert result.stored
    [row] = _rows(any_sessions)
    assert row.id == result.message_id
    assert row.raw == raw and row.size == len(raw)
    assert row.status == "new" and row.error is None
    assert row.from_address == "anna@example.net"
    assert row.subject == "Één verdachte auto in Empel"
    assert row.message_id == "<abc@example.net>"
    assert (row.origin, row.origin_ref) == ("imap:INBOX", "7:1")
    assert row.received_at == clock.now()


def test_duplicate_returns_the_first_id_and_stores_nothing(any_sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    ingestor = Ingestor(any_sessions, clock, LIMIT)
    raw = message("Inbraak", "Vannacht.")
    first = ingestor.store(raw, origin="imap:INBOX", origin_ref="1:1")
    again = ingestor.store(raw, origin="imap:INBOX", origin_ref="2:1")
    assert first.stored and not again.stored
    assert again.message_id == first.message_id
    assert len(_rows(any_sessions)) == 1


def test_same_message_id_different_bytes_are_two_messages(any_sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    ingestor = Ingestor(any_sessions, clock, LIMIT)
    one = ingestor.store(message("A", "een", message_id="x@y"), origin="maildir", origin_ref=None)
    two = ingestor.store(message("A", "twee", message_id="x@y"), origin="maildir", origin_ref=None)
    assert one.stored and two.stored and one.message_id != two.message_id


def test_concurrent_stores_of_one_message_keep_one_row(any_sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    raw = message("Fietsendiefstal", "Bij het station.")
    start = threading.Barrier(6)
    results = []

    def store() -> None:
        ingestor = Ingestor(any_sessions, clock, LIMIT)
        start.wait(timeout=10)
        results.append(ingestor.store(raw, origin="imap:INBOX", origin_ref="1:1"))

    threads = [threading.Thread(target=store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 6
    assert sum(r.stored for r in results) == 1
    assert len({r.message_id for r in results}) == 1
    assert len(_rows(any_sessions)) == 1


def test_oversized_message_is_stored_whole_and_flagged(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    raw = message("Groot", "x" * (LIMIT * 2), cte="7bit")
    result = Ingestor(sessions, clock, LIMIT).store(raw, origin="maildir", origin_ref="f")
    assert result.stored
    [row] = _rows(sessions)
    assert row.raw == raw, "oversized mail must not be truncated"
    assert row.status == "new"
    assert row.error is not None and row.error.startswith("oversize")


def test_header_fields_survive_broken_headers() -> None:
    fields = header_fields(b"From: =?utf-8?q?broken <\xff\xfe@x\r\nSubject: =?bogus?x?zz?=\r\n\r\nbody")
    assert fields.message_id is None
    assert fields.subject is not None
    assert header_fields(b"") == header_fields(b"\r\n\r\n")
    no_header_end = b"Subject: " + b"a" * 1000
    assert header_fields(no_header_end).subject is not None


def test_dedup_key_depends_on_message_id_and_bytes() -> None:
    assert dedup_key("<a@b>", b"x") != dedup_key("<a@c>", b"x")
    assert dedup_key("<a@b>", b"x") != dedup_key("<a@b>", b"y")
    assert dedup_key(None, b"x") == dedup_key(None, b"x")


def test_mailbox_state_round_trip(any_sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    with any_sessions() as session, session.begin():
        assert mailbox_state(session, "imap://a") is None
        save_mailbox_state(session, "imap://a", uidvalidity=9, last_uid=0, now=clock.now())
    with any_sessions() as session, session.begin():
        save_mailbox_state(session, "imap://a", uidvalidity=9, last_uid=42, now=clock.now())
    with any_sessions() as session:
        state = mailbox_state(session, "imap://a")
        assert state is not None and (state.uidvalidity, state.last_uid) == (9, 42)
        assert session.scalar(select(func.count()).select_from(Message)) == 0


def test_backoff_grows_to_its_cap_with_full_jitter_and_resets() -> None:
    drawn: list[tuple[float, float]] = []

    def highest(low: float, high: float) -> float:
        drawn.append((low, high))
        return high

    backoff = Backoff(base=0.5, cap=4.0, uniform=highest)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(low == 0.0 for low, _ in drawn)
    backoff.reset()
    assert backoff.next_delay() == 0.5
    with pytest.raises(ValueError):
        Backoff(base=2.0, cap=1.0)
