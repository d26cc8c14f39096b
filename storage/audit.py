"""The audit trail: who did what, for decisions, refusals and membership."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import AuditEvent


def record(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    queue_item_id: int | None = None,
    message_id: int | None = None,
    **detail: Any,
) -> AuditEvent:
    event = AuditEvent(
        at=at,
        actor=actor,
        action=action,
        queue_item_id=queue_item_id,
        message_id=message_id,
        detail=detail,
    )
    session.add(event)
    return event


def events_for_item(session: Session, queue_item_id: int) -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.queue_item_id == queue_item_id).order_by(AuditEvent.id)
    return list(session.scalars(query))
