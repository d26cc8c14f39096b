"""The outbox's claims and marks, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from relay.service.clock import FrozenClock
from storage import workers
from storage.db import make_engine, migrate, session_factory
from storage.models import Alert, Delivery
from storage.outbox import (
    claim_due,
    enqueue_notice,
    mark_failed,
    mark_retry,
    mark_sent,
    pending_count,
    release,
)

LEASE = timedelta(minutes=5)


@pytest.fixture
def outbox(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine: Engine = make_engine(db_url)
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def fill(sessions: sessionmaker[Session], now: datetime, count: int) -> list[int]:
    with sessions() as session, session.begin():
        rows = [enqueue_notice(session, recipient=f"r{i}@example.net", raw=b"x", purpose="test", now=now)
                for i in range(count)]
        session.flush()
        return [row.id for row in rows]


def claim(sessions: sessionmaker[Session], worker: str, now: datetime, limit: int = 10) -> list[int]:
    """Claim as a live worker (its heartbeat is ``now``)."""
    with sessions() as session, session.begin():
        workers.register(session, worker, "host", 1, now)
        return [row.id for row in claim_due(session, worker, now, limit, LEASE)]


def test_a_dead_workers_claims_are_free_within_seconds(outbox: sessionmaker[Session], clock: FrozenClock) -> None:
    now = clock.now()
    ids = fill(outbox, now, 4)
    assert claim(outbox, "a", now, limit=2) == ids[:2]
    # "a" stops beating; "b" stays alive. Long before the lease, a's rows are free, b's are not.
    later = now + workers.STALE_AFTER + timedelta(seconds=1)
    assert claim(outbox, "b", now, limit=2) == ids[2:]
    with outbox() as session, session.begin():
        assert workers.heartbeat(session, "b", later)
    assert claim(outbox, "c", later) == ids[:2]
    # A worker whose row is gone (removed at restart on its host) holds nothing either.
    with outbox() as session, session.begin():
        workers.unregister(session, "b")
    assert claim(outbox, "d", later) == ids[2:]


def test_claims_do_not_overlap_and_expire(outbox: sessionmaker[Session], clock: FrozenClock) -> None:
    now = clock.now()
    ids = fill(outbox, now, 5)
    first = claim(outbox, "a", now, limit=3)
    second = claim(outbox, "b", now, limit=3)
    assert first == ids[:3] and second == ids[3:]
    assert claim(outbox, "c", now) == []
    # Worker a died: after its lease, its rows are due again.
    later = now + LEASE + timedelta(seconds=1)
    assert sorted(claim(outbox, "c", later)) == ids  # b's lease ran out too


def test_not_due_until_next_attempt(outbox: sessionmaker[Session], clock: FrozenClock) -> None:
    now = clock.now()
    [row_id] = fill(outbox, now, 1)
    assert claim(outbox, "a", now) == [row_id]
    with outbox() as session, session.begin():
        mark_retry(session, row_id, now + timedelta(minutes=1), "451 later")
    assert claim(outbox, "a", now) == []
    assert claim(outbox, "a", now + timedelta(minutes=1)) == [row_id]
    with outbox() as session:
        row = session.get(Delivery, row_id)
        assert row is not None and row.attempts == 1 and row.last_error == "451 later"


def test_marks_and_release(outbox: sessionmaker[Session], clock: FrozenClock) -> None:
    now = clock.now()
    ids = fill(outbox, now, 3)
    assert claim(outbox, "a", now) == ids
    with outbox() as session, session.begin():
        mark_sent(session, [ids[0]], now)
        mark_failed(session, ids[1], "550 no such user")
        release(session, [ids[2]], "a")
    with outbox() as session:
        rows = {row.id: row for row in session.scalars(select(Delivery))}
        assert (rows[ids[0]].status, rows[ids[0]].sent_at) == ("sent", now)
        assert (rows[ids[1]].status, rows[ids[1]].last_error) == ("failed", "550 no such user")
        assert rows[ids[2]].claimed_by is None
        assert pending_count(session) == 1
    assert claim(outbox, "b", now) == [ids[2]]  # released: due again at once


@pytest.mark.postgres
def test_postgres_claimers_skip_each_others_locked_rows(postgres_url: str, clock: FrozenClock) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    sessions = session_factory(engine)
    now = clock.now()
    ids = fill(sessions, now, 4)
    with sessions() as first, sessions() as second:
        first.begin()
        second.begin()
        a = [row.id for row in claim_due(first, "a", now, 2, LEASE)]  # locked, not yet committed
        b = [row.id for row in claim_due(second, "b", now, 10, LEASE)]  # must neither wait nor overlap
        second.commit()
        first.commit()
    engine.dispose()
    assert a == ids[:2] and b == ids[2:]


def test_notices_and_urgent_alerts_go_first(outbox: sessionmaker[Session], clock: FrozenClock) -> None:
    now = clock.now()
    with outbox() as session, session.begin():
        normal = Alert(wards=["maaspoort"], source="police", source_label="Politie", category="info",
                       urgency="normal", subject="Info", body="x", attachments=[], message_id_header="<a@x>",
                       tag="a" * 16, created_at=now)
        urgent = Alert(wards=["maaspoort"], source="police", source_label="Politie", category="missing_person",
                       urgency="urgent", subject="Vermist", body="x", attachments=[], message_id_header="<b@x>",
                       tag="b" * 16, created_at=now)
        session.add_all([normal, urgent])
        session.flush()
        early = now - timedelta(minutes=5)
        rows = [Delivery(alert_id=normal.id, recipient=f"n{i}@example.net", purpose="alert", status="pending",
                         attempts=0, next_attempt_at=early, created_at=early) for i in range(3)]
        rows += [Delivery(alert_id=urgent.id, recipient="u@example.net", purpose="alert", status="pending",
                          attempts=0, next_attempt_at=now, created_at=now)]
        session.add_all(rows)
        session.flush()
        notice = enqueue_notice(session, recipient="anna@example.org", raw=b"x", purpose="approval_request", now=now)
        session.flush()
        expected_first = {rows[3].id, notice.id}
    first_two = claim(outbox, "a", now, limit=2)
    assert set(first_two) == expected_first
    assert len(claim(outbox, "a", now)) == 3
