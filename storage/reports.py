"""What the monthly report counts, read from rows that retention keeps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import (
    ClassificationRecord,
    Correction,
    Delivery,
    ItemStatus,
    Member,
    Message,
    QueueItem,
)

DECIDED = (ItemStatus.APPROVED, ItemStatus.REJECTED, ItemStatus.EXPIRED)


def reports_received(session: Session, start: datetime, end: datetime) -> list[tuple[str, str | None, list[Any]]]:
    """(source, category, wards) of every report received in [start, end)."""
    query = (
        select(ClassificationRecord.source, ClassificationRecord.category, ClassificationRecord.wards)
        .join(Message, Message.id == ClassificationRecord.message_id)
        .where(Message.received_at >= start, Message.received_at < end, ClassificationRecord.kind == "report")
    )
    return [(source, category, wards) for source, category, wards in session.execute(query)]


def items_decided(session: Session) -> list[tuple[str, datetime, datetime | None, datetime, Any, Any]]:
    """(status, created, decided, expires, target wards, proposed wards) of every decided or expired head item."""
    query = (
        select(QueueItem.status, QueueItem.created_at, QueueItem.decided_at, QueueItem.expires_at,
               QueueItem.target_wards, QueueItem.proposed_wards)
        .where(QueueItem.status.in_(DECIDED), QueueItem.merged_into_id.is_(None))
    )
    return [(row[0], row[1], row[2], row[3], row[4], row[5]) for row in session.execute(query)]


def all_members(session: Session) -> list[Member]:
    return list(session.scalars(select(Member)))


def alert_copy_outcomes(session: Session) -> list[tuple[str, datetime | None, datetime]]:
    """(status, sent_at, created_at) of every alert copy."""
    query = select(Delivery.status, Delivery.sent_at, Delivery.created_at).where(Delivery.alert_id.is_not(None))
    return [(status, sent_at, created) for status, sent_at, created in session.execute(query)]


def corrections_made(session: Session, start: datetime, end: datetime) -> list[tuple[str, str | None, str, list[Any]]]:
    """(field, old value, new value, wards) of every correction of the rules' judgement made in [start, end)."""
    query = (
        select(Correction.field, Correction.old_value, Correction.new_value, Correction.wards)
        .where(Correction.at >= start, Correction.at < end)
        .order_by(Correction.id)
    )
    return [(field, old, new, wards) for field, old, new, wards in session.execute(query)]
