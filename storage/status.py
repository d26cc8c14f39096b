"""What ``binrelay status`` reads: counts and ages, never a member's address or text. It never commits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from storage.models import (
    Delivery,
    DeliveryStatus,
    ItemStatus,
    Member,
    MemberStatus,
    Message,
    MessageStatus,
    QueueItem,
    SourceHealth,
)
from storage.workers import live_workers

# A delivery whose retry time passed this long ago is stuck: nobody is sending.
OVERDUE_AFTER = timedelta(minutes=15)


def record_source_pass(session: Session, source: str, error: str | None, now: datetime) -> None:
    """Note how a source's pass went: a good pass clears the error, a failed one keeps the last good time."""
    health = session.get(SourceHealth, source)
    if health is None:
        health = SourceHealth(source=source)
        session.add(health)
    if error is None:
        health.checked_at, health.failed_at, health.error = now, None, None
    else:
        health.failed_at, health.error = now, error[:500]
    session.flush()


@dataclass(frozen=True)
class SourceLine:
    source: str
    checked_at: datetime | None
    failed_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class WardQueue:
    ward: str  # a ward slug, or "" for items without a ward
    pending: int
    oldest: datetime


@dataclass
class Figures:
    sources: list[SourceLine] = field(default_factory=list)
    messages_waiting: int = 0  # stored, not routed yet
    messages_failed: int = 0  # routing raised: held for a human
    wards: list[WardQueue] = field(default_factory=list)
    overdue_items: int = 0  # pending past their escalation time
    deliveries_pending: int = 0
    deliveries_retrying: int = 0  # pending after a failed attempt
    deliveries_overdue: int = 0  # due long ago and not sent: nobody is sending
    deliveries_failed_today: int = 0
    members_disabled: int = 0  # by bounces
    workers: list[tuple[str, int, datetime]] = field(default_factory=list)  # host, pid, started


def figures(session: Session, now: datetime) -> Figures:
    found = Figures()
    found.sources = [SourceLine(h.source, h.checked_at, h.failed_at, h.error)
                     for h in session.scalars(select(SourceHealth).order_by(SourceHealth.source))]
    found.messages_waiting = _count(session, Message, Message.status == MessageStatus.NEW)
    found.messages_failed = _count(session, Message, Message.status == MessageStatus.FAILED)
    found.wards = _ward_queues(session)
    pending = (QueueItem.status == ItemStatus.PENDING, QueueItem.merged_into_id.is_(None))
    found.overdue_items = _count(session, QueueItem, *pending, QueueItem.escalate_at.is_not(None),
                                 QueueItem.escalate_at < now, QueueItem.escalated_at.is_(None))
    waiting = Delivery.status == DeliveryStatus.PENDING
    found.deliveries_pending = _count(session, Delivery, waiting)
    found.deliveries_retrying = _count(session, Delivery, waiting, Delivery.attempts > 0)
    found.deliveries_overdue = _count(session, Delivery, waiting, Delivery.next_attempt_at < now - OVERDUE_AFTER)
    found.deliveries_failed_today = _count(session, Delivery, Delivery.status == DeliveryStatus.FAILED,
                                           Delivery.created_at > now - timedelta(days=1))
    found.members_disabled = _count(session, Member, Member.status == MemberStatus.DISABLED)
    found.workers = [(w.host, w.pid, w.started_at) for w in live_workers(session, now)]
    return found


def _count(session: Session, model: type, *conditions: ColumnElement[bool]) -> int:
    query: Select[int] = select(func.count()).select_from(model).where(*conditions)
    return int(session.scalar(query) or 0)


def _ward_queues(session: Session) -> list[WardQueue]:
    """Pending items (a merged group counts once) per proposed ward, with the oldest's creation time."""
    rows = session.execute(
        select(QueueItem.proposed_wards, QueueItem.created_at)
        .where(QueueItem.status == ItemStatus.PENDING, QueueItem.merged_into_id.is_(None))
    ).all()
    per_ward: dict[str, tuple[int, datetime]] = {}
    for wards, created in rows:
        for ward in wards or [""]:
            count, oldest = per_ward.get(ward, (0, created))
            per_ward[ward] = (count + 1, min(oldest, created))
    return [WardQueue(ward, count, oldest) for ward, (count, oldest) in sorted(per_ward.items())]
