"""Repository functions for stored messages and mailbox bookkeeping.

They never commit: the caller owns the transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, update
from sqlalchemy.orm import Session

from storage.db import rowcount
from storage.models import ClassificationRecord, MailboxState, Message, MessageStatus


def message_id_by_dedup_key(session: Session, dedup_key: str) -> int | None:
    return session.scalar(select(Message.id).where(Message.dedup_key == dedup_key))


def insert_message(session: Session, **values: Any) -> int:
    """Insert one ``messages`` row with a Core INSERT (no unit-of-work overhead on the hot path).

    Raises IntegrityError on a duplicate dedup key; returns the new id.
    """
    new_id = session.execute(_INSERT_MESSAGE, values).scalar_one()
    return int(new_id)


def insert_messages(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert many rows in one statement (SQLAlchemy's insertmanyvalues); ids in row order.

    Raises IntegrityError if any row is a duplicate: the caller then falls back to one by one.
    """
    if not rows:
        return []
    result = session.execute(_INSERT_MESSAGES, rows)
    return [int(row[0]) for row in result.all()]


# Built once: the compiled form is cached and only the parameters change.
_MESSAGES = cast(Table, Message.__table__)
_INSERT_MESSAGE = insert(_MESSAGES).returning(_MESSAGES.c.id)
_INSERT_MESSAGES = insert(_MESSAGES).returning(_MESSAGES.c.id, sort_by_parameter_order=True)


def count_messages(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Message)) or 0)


def mailbox_state(session: Session, source: str) -> MailboxState | None:
    return session.get(MailboxState, source)


def save_mailbox_state(
    session: Session, source: str, *, uidvalidity: int | None, last_uid: int, now: datetime
) -> MailboxState:
    """Create or update where ``source`` left off."""
    state = session.get(MailboxState, source)
    if state is None:
        state = MailboxState(source=source, uidvalidity=uidvalidity, last_uid=last_uid, updated_at=now)
        session.add(state)
    else:
        state.uidvalidity = uidvalidity
        state.last_uid = last_uid
        state.updated_at = now
    session.flush()
    return state


def pending_message_ids(session: Session, limit: int) -> list[int]:
    """New messages, senders taking turns: a flood from one address cannot hold
    up everybody else's mail until all of it has been routed."""
    turn = func.row_number().over(partition_by=func.lower(Message.from_address), order_by=Message.id)
    ranked = select(Message.id, turn.label("turn")).where(Message.status == MessageStatus.NEW).subquery()
    query = select(ranked.c.id).order_by(ranked.c.turn, ranked.c.id).limit(limit)
    return list(session.scalars(query))


def take_new_message(session: Session, message_id: int) -> Message | None:
    """The message if it is still ``new``, locked for this transaction; None when routed or taken.

    On PostgreSQL a row another process is routing is skipped, not waited for
    (``FOR UPDATE SKIP LOCKED``); SQLite's transactions already begin IMMEDIATE.
    """
    query = select(Message).where(Message.id == message_id, Message.status == MessageStatus.NEW)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Message)
    return session.scalars(query).first()


def fail_if_new(session: Session, message_id: int, error: str) -> bool:
    """Mark a message that could not be routed as failed, unless another process routed it meanwhile."""
    result = session.execute(
        update(Message).where(Message.id == message_id, Message.status == MessageStatus.NEW)
        .values(status=MessageStatus.FAILED, error=error[:2000]).execution_options(synchronize_session=False)
    )
    return rowcount(result) > 0


def classified_messages(session: Session) -> list[tuple[str | None, ClassificationRecord]]:
    """(subject, classification) of every classified message, oldest first."""
    query = select(Message.subject, ClassificationRecord).join(ClassificationRecord).order_by(Message.id)
    return [(subject, record) for subject, record in session.execute(query)]
