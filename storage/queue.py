"""Repository functions for the approval queue. They never commit.

The decision itself is one conditional UPDATE (``claim_decision``): it changes
a row only while the item is pending and its token unused, so of two
coordinators answering at the same moment, in two processes, on SQLite or
PostgreSQL, exactly one changes the row and wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from storage.db import rowcount
from storage.models import Alert, AuditEvent, DuplicateKey, ItemStatus, Message, QueueItem

DECIDED_STATUSES = frozenset({ItemStatus.APPROVED, ItemStatus.REJECTED})
# Timer columns: (when it is due, when it was done).
TIMERS = {
    "remind": (QueueItem.remind_at, QueueItem.reminded_at),
    "escalate": (QueueItem.escalate_at, QueueItem.escalated_at),
}


def add_item(session: Session, **fields: Any) -> QueueItem:
    """Add a pending item and flush it, so it has an id."""
    item = QueueItem(status=ItemStatus.PENDING, **fields)
    session.add(item)
    session.flush()
    return item


def item_by_id(session: Session, item_id: int) -> QueueItem | None:
    return session.get(QueueItem, item_id)


def item_by_token_hash(session: Session, digest: str) -> QueueItem | None:
    return session.scalars(select(QueueItem).where(QueueItem.token_hash == digest)).first()


def pending_items(session: Session) -> list[QueueItem]:
    query = select(QueueItem).where(QueueItem.status == ItemStatus.PENDING).order_by(QueueItem.created_at, QueueItem.id)
    return list(session.scalars(query))


def _changed_one(result: Any) -> bool:
    assert isinstance(result, CursorResult)
    return result.rowcount == 1


def claim_decision(
    session: Session,
    item_id: int,
    *,
    status: str,
    decided_by: str,
    now: datetime,
    **changes: Any,
) -> bool:
    """Decide a pending item atomically; True only for the one caller that did.

    ``changes`` may set reason, target_wards, partners, edited_text.
    """
    if status not in DECIDED_STATUSES:
        raise ValueError(f"not a decision: {status!r}")
    statement = (
        update(QueueItem)
        .where(QueueItem.id == item_id, QueueItem.status == ItemStatus.PENDING, QueueItem.token_used_at.is_(None))
        .values(status=status, decided_by=decided_by, decided_at=now, token_used_at=now, **changes)
        .execution_options(synchronize_session=False)
    )
    won = _changed_one(session.execute(statement))
    if won:
        item = session.get(QueueItem, item_id)
        if item is not None:
            session.refresh(item)
    return won


def expire_item(session: Session, item_id: int, now: datetime) -> bool:
    """Mark a pending item expired; False when a decision came first."""
    statement = (
        update(QueueItem)
        .where(QueueItem.id == item_id, QueueItem.status == ItemStatus.PENDING, QueueItem.token_used_at.is_(None))
        .values(status=ItemStatus.EXPIRED, decided_at=now, decided_by="system")
        .execution_options(synchronize_session=False)
    )
    return _changed_one(session.execute(statement))


def mark_timer_done(session: Session, item_id: int, timer: str, now: datetime) -> bool:
    """Set reminded_at / escalated_at once; False when another process already did."""
    _, done = TIMERS[timer]
    statement = (
        update(QueueItem)
        .where(QueueItem.id == item_id, QueueItem.status == ItemStatus.PENDING, done.is_(None))
        .values({done.key: now})
        .execution_options(synchronize_session=False)
    )
    return _changed_one(session.execute(statement))


def due_ids(session: Session, timer: str, now: datetime, limit: int = 200) -> list[int]:
    """Pending items whose reminder or escalation is due and not yet done."""
    due, done = TIMERS[timer]
    conditions: Sequence[ColumnElement[bool]] = (
        QueueItem.status == ItemStatus.PENDING,
        due.is_not(None),
        due <= now,
        done.is_(None),
        QueueItem.expires_at > now,
    )
    query = select(QueueItem.id).where(*conditions).order_by(due, QueueItem.id).limit(limit)
    return list(session.scalars(query))


def expired_ids(session: Session, now: datetime, limit: int = 200) -> list[int]:
    query = (
        select(QueueItem.id)
        .where(QueueItem.status == ItemStatus.PENDING, QueueItem.expires_at <= now)
        .order_by(QueueItem.expires_at, QueueItem.id)
        .limit(limit)
    )
    return list(session.scalars(query))


@dataclass(frozen=True)
class DuplicateCandidate:
    head_id: int  # the item a repeat would join
    signature: dict[str, Any]  # the earlier report's (rules.similarity.signature)


def duplicate_candidates(session: Session, *, heads_of_kinds: Sequence[str], category: str, wards: Sequence[str],
                         since: datetime, limit: int) -> list[DuplicateCandidate]:
    """The newest reports (at most ``limit``) of ``category`` in one of ``wards`` since ``since`` whose
    item is still pending or approved: read from the duplicate index, never the whole queue."""
    newest = (
        select(DuplicateKey.head_id, DuplicateKey.message_id)
        .join(QueueItem, QueueItem.id == DuplicateKey.head_id)  # the head: no alias, so the statement is cached
        .where(
            DuplicateKey.category == category,
            DuplicateKey.ward.in_(list(wards)),
            DuplicateKey.created_at >= since,
            QueueItem.status.in_((ItemStatus.PENDING, ItemStatus.APPROVED)),
            QueueItem.kind.in_(list(heads_of_kinds)),
        )
        .order_by(DuplicateKey.created_at.desc(), DuplicateKey.id.desc())
        .limit(limit)
    )
    found = list(session.execute(newest))
    # The signatures only of those (reading them beside the sort would carry every match's text).
    query = select(Message.id, Message.signature).where(
        Message.id.in_({message_id for _, message_id in found}), Message.signature.is_not(None))
    signatures: dict[int, dict[str, Any]] = {message_id: signature for message_id, signature in session.execute(query)}
    return [DuplicateCandidate(head_id, signatures[message_id]) for head_id, message_id in found
            if message_id in signatures]


def add_duplicate_keys(session: Session, *, head_id: int, message_id: int, category: str, wards: Sequence[str],
                       now: datetime) -> None:
    """Make a held report findable by later ones: one row per place in ``wards`` (``""`` stands for none)."""
    session.add_all(DuplicateKey(head_id=head_id, message_id=message_id, category=category, ward=ward,
                                 created_at=now) for ward in wards)


def purge_duplicate_keys(session: Session, before: datetime) -> int:
    """Keys older than any merge window: nothing can join through them any more."""
    result = session.execute(delete(DuplicateKey).where(DuplicateKey.created_at < before)
                             .execution_options(synchronize_session=False))
    return rowcount(result)


def merged_into(session: Session, head_id: int, newest: int | None = None) -> list[QueueItem]:
    """The items merged into ``head_id`` (only the ``newest`` so many, when given), oldest first."""
    query = select(QueueItem).where(QueueItem.merged_into_id == head_id).order_by(QueueItem.id.desc())
    if newest is not None:
        query = query.limit(newest)
    return list(reversed(session.scalars(query).all()))


def merged_count(session: Session, head_id: int) -> int:
    query = select(func.count()).select_from(QueueItem).where(QueueItem.merged_into_id == head_id)
    return int(session.scalar(query) or 0)


def mark_alert_complete(session: Session, alert_id: int, now: datetime) -> None:
    """No copies of the alert are pending any more."""
    session.execute(update(Alert).where(Alert.id == alert_id, Alert.completed_at.is_(None))
                    .values(completed_at=now).execution_options(synchronize_session=False))


def alerts_between(session: Session, since: datetime, until: datetime) -> list[Alert]:
    """Alerts created after ``since`` up to ``until``, oldest first."""
    query = select(Alert).where(Alert.created_at > since, Alert.created_at <= until).order_by(Alert.created_at)
    return list(session.scalars(query))


def alert_by_tag(session: Session, tag: str) -> Alert | None:
    return session.scalars(select(Alert).where(Alert.tag == tag.lower())).first()


def alerts_by_message_ids(session: Session, message_ids: Sequence[str]) -> list[Alert]:
    """Alerts whose Message-ID is one of ``message_ids`` (with or without angle brackets)."""
    wanted = {f"<{mid.strip().strip('<>')}>" for mid in message_ids if mid.strip()}
    wanted |= {mid.strip("<>") for mid in wanted}
    if not wanted:
        return []
    query = select(Alert).where(Alert.message_id_header.in_(sorted(wanted))).order_by(Alert.id)
    return list(session.scalars(query))


def alert_made_from(session: Session, message_ids: Sequence[str]) -> Alert | None:
    """The newest original alert (not a follow-up) made from a message with one of these Message-IDs."""
    query = (
        select(Alert)
        .join(QueueItem, QueueItem.id == Alert.queue_item_id)
        .join(Message, Message.id == QueueItem.message_id)
        .where(Message.message_id.in_(list(message_ids)), Alert.thread_tag.is_(None))
        .order_by(Alert.id.desc())
    )
    return session.scalars(query).first()


def audit_events_by(
    session: Session, actor: str, action: str, since: datetime, limit: int = 100
) -> list[AuditEvent]:
    query = (
        select(AuditEvent)
        .where(AuditEvent.actor == actor, AuditEvent.action == action, AuditEvent.at >= since)
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))
