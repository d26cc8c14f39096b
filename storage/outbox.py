"""The outbox: every message binrelay sends is a row here before it is sent.

Alerts have one row per (alert, recipient) and are rendered at send time;
notices (approval requests, answers, confirmations) carry their full bytes.

Several processes may deliver from one database. A process claims a batch of
due rows (``claimed_by``/``claimed_until``): on PostgreSQL with
``SELECT ... FOR UPDATE SKIP LOCKED`` so concurrent claimers never wait for or
take each other's rows; on SQLite the session's transaction already begins
IMMEDIATE (storage.db), so one claimer at a time. A claim is free again when
its worker's heartbeat stopped (storage.workers: within seconds of a crash) or,
failing that, when its lease ran out. These functions never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, case, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from storage.models import Alert, Delivery, DeliveryStatus, Worker
from storage.workers import STALE_AFTER

MAX_ERROR_CHARS = 1000


def enqueue_notice(
    session: Session, *, recipient: str, raw: bytes, purpose: str, now: datetime
) -> Delivery:
    """Queue one complete message for sending; the caller commits."""
    row = Delivery(
        recipient=recipient.lower(),
        raw=raw,
        purpose=purpose,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    return row


def enqueue_alert_copies(session: Session, alert_id: int, recipients: Sequence[tuple[int, str]],
                         now: datetime) -> int:
    """One pending row per (member id, address): the copies of an alert, rendered at send time."""
    rows = [
        {"alert_id": alert_id, "member_id": member_id, "recipient": address.lower(), "purpose": "alert",
         "status": DeliveryStatus.PENDING, "attempts": 0, "next_attempt_at": now, "created_at": now}
        for member_id, address in recipients
    ]
    if rows:
        session.execute(insert(Delivery), rows)
    return len(rows)


def recipients_of_alert(session: Session, alert_id: int) -> list[tuple[int, str]]:
    """(member id, address) of the members who were sent the alert, or will be (pending rows count too)."""
    query = (
        select(Delivery.member_id, Delivery.recipient)
        .where(Delivery.alert_id == alert_id, Delivery.member_id.is_not(None),
               Delivery.status.in_((DeliveryStatus.SENT, DeliveryStatus.PENDING)))
        .order_by(Delivery.id)
    )
    return [(member_id, recipient) for member_id, recipient in session.execute(query) if member_id]


def _due(query: Any, dialect: str, now: datetime, limit: int) -> Any:
    query = (
        query.where(
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.next_attempt_at <= now,
            or_(Delivery.claimed_until.is_(None), Delivery.claimed_until <= now, ~_claimer_alive(now)),
        )
        .outerjoin(Alert, Alert.id == Delivery.alert_id)
        .order_by(_PRIORITY, Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
    )
    # PostgreSQL: rows another process is claiming are skipped, not waited for.
    return query.with_for_update(skip_locked=True, of=Delivery) if dialect == "postgresql" else query


def _claimer_alive(now: datetime) -> Any:
    """The row's claimer is a worker with a fresh heartbeat (a claim by a dead process is free)."""
    return exists().where(Worker.id == Delivery.claimed_by, Worker.heartbeat_at > now - STALE_AFTER)


# Notices (approval requests, answers) and urgent alerts go before the copies
# of a large ordinary fan-out that is already under way.
_PRIORITY = case((Delivery.alert_id.is_(None), 0), (Alert.urgency == "urgent", 0), else_=1)


def _claim(session: Session | Connection, ids: list[int], worker: str, until: datetime) -> None:
    if ids:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_(ids))
            .values(claimed_by=worker, claimed_until=until)
            .execution_options(synchronize_session=False)
        )


def claim_due(session: Session, worker: str, now: datetime, limit: int, lease: timedelta) -> list[Delivery]:
    """Take up to ``limit`` due rows for ``worker`` until ``now + lease``.

    Notices and urgent alerts first, then by due time and age.
    """
    query = _due(select(Delivery), session.get_bind().dialect.name, now, limit)
    rows = list(session.scalars(query))
    _claim(session, [row.id for row in rows], worker, now + lease)
    for row in rows:
        row.claimed_by, row.claimed_until = worker, now + lease
    return rows


def claim_due_rows(connection: Connection, worker: str, now: datetime, limit: int,
                   lease: timedelta) -> list[Row[Any]]:
    """``claim_due`` for the hot path: plain rows (id, alert_id, member_id, recipient, attempts, raw)."""
    columns = select(Delivery.id, Delivery.alert_id, Delivery.member_id, Delivery.recipient,
                     Delivery.attempts, Delivery.raw)
    rows = list(connection.execute(_due(columns, connection.dialect.name, now, limit)))
    _claim(connection, [row.id for row in rows], worker, now + lease)
    return rows


def mark_sent(session: Session | Connection, delivery_ids: Sequence[int], now: datetime) -> None:
    """The server accepted these: never send them again (a Session or a Core connection)."""
    if not delivery_ids:
        return
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(list(delivery_ids)))
        .values(status=DeliveryStatus.SENT, sent_at=now, attempts=Delivery.attempts + 1, claimed_by=None,
                claimed_until=None, last_error=None)
        .execution_options(synchronize_session=False)
    )


def mark_retry(session: Session | Connection, delivery_id: int, next_attempt_at: datetime, error: str) -> None:
    """A temporary failure: due again at ``next_attempt_at``."""
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(attempts=Delivery.attempts + 1, next_attempt_at=next_attempt_at,
                last_error=error[:MAX_ERROR_CHARS], claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )


def mark_failed(session: Session | Connection, delivery_id: int, error: str) -> None:
    """A permanent failure (5xx, out of attempts, recipient gone): never tried again."""
    session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id)
        .values(status=DeliveryStatus.FAILED, attempts=Delivery.attempts + 1, last_error=error[:MAX_ERROR_CHARS],
                claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )


def release(session: Session | Connection, delivery_ids: Sequence[int], worker: str) -> None:
    """Give back claimed rows that were not tried (a stop request): due again at once."""
    if not delivery_ids:
        return
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(list(delivery_ids)), Delivery.claimed_by == worker, Delivery.status == DeliveryStatus.PENDING)
        .values(claimed_by=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )


def last_notice_at(session: Session, member_id: int, purpose: str) -> datetime | None:
    """When the newest notice of ``purpose`` for this member was queued (e.g. their last digest)."""
    query = select(func.max(Delivery.created_at)).where(Delivery.member_id == member_id,
                                                        Delivery.purpose == purpose)
    return session.scalar(query)


def outcomes_of(session: Session, purpose: str) -> list[Row[Any]]:
    """(recipient, status, last_error) of every notice queued for ``purpose``, oldest first."""
    query = select(Delivery.recipient, Delivery.status, Delivery.last_error).where(Delivery.purpose == purpose)
    return list(session.execute(query.order_by(Delivery.id)))


def pending_count(session: Session, alert_id: int | None = None) -> int:
    query = select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.PENDING)
    if alert_id is not None:
        query = query.where(Delivery.alert_id == alert_id)
    return int(session.scalar(query) or 0)
