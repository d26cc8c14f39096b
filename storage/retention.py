"""Retention's statements: personal data older than a cutoff is removed, in batches.

Each function purges at most ``batch`` rows and returns how many it did, so
the caller can run it again until less than a batch remains (one transaction
per batch). What is kept and what goes is described in docs/privacy.md.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, String, cast, delete, literal, select, update
from sqlalchemy.orm import Session

from storage.models import (
    Alert,
    AuditEvent,
    Confirmation,
    Delivery,
    DeliveryStatus,
    ItemStatus,
    Member,
    MemberStatus,
    Message,
    QueueItem,
)

PURGED = "purged"


def _ids(session: Session, query: Select[int]) -> list[int]:
    return list(session.scalars(query))


def purge_messages(session: Session, cutoff: datetime, now: datetime, batch: int) -> int:
    """Messages received before ``cutoff`` lose their bytes, text, subject, sender and Message-ID."""
    ids = _ids(session, select(Message.id).where(Message.received_at < cutoff, Message.purged_at.is_(None))
               .order_by(Message.id).limit(batch))
    if ids:
        session.execute(update(Message).where(Message.id.in_(ids)).values(
            raw=None, body_text=None, subject=None, from_address=None, message_id=None, error=None,
            facts=None, signature=None, purged_at=now,
        ))
    return len(ids)


def purge_alerts(session: Session, cutoff: datetime, now: datetime, batch: int) -> int:
    """Alerts made before ``cutoff`` lose their text and original sender."""
    ids = _ids(session, select(Alert.id).where(Alert.created_at < cutoff, Alert.body.is_not(None))
               .order_by(Alert.id).limit(batch))
    if ids:
        session.execute(update(Alert).where(Alert.id.in_(ids)).values(body=None, original_sender=None))
    return len(ids)


def purge_deliveries(session: Session, cutoff: datetime, now: datetime, batch: int) -> int:
    """Finished deliveries lose their bytes and address (unique per alert: a stand-in per row)."""
    ids = _ids(session, select(Delivery.id).where(
        Delivery.created_at < cutoff, Delivery.status.in_((DeliveryStatus.SENT, DeliveryStatus.FAILED)),
        Delivery.recipient.not_like(f"{PURGED}-%"),
    ).order_by(Delivery.id).limit(batch))
    if ids:
        session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(
            raw=None, last_error=None, recipient=literal(f"{PURGED}-") + cast(Delivery.id, String),
        ))
    return len(ids)


def purge_audit_events(session: Session, cutoff: datetime, now: datetime, batch: int) -> int:
    """Audit events before ``cutoff`` lose their actor and details."""
    ids = _ids(session, select(AuditEvent.id).where(AuditEvent.at < cutoff, AuditEvent.actor != PURGED)
               .order_by(AuditEvent.id).limit(batch))
    if ids:
        session.execute(update(AuditEvent).where(AuditEvent.id.in_(ids)).values(actor=PURGED, detail={}))
    return len(ids)


def purge_queue_items(session: Session, cutoff: datetime, now: datetime, batch: int) -> int:
    """Decided items older than ``cutoff`` lose their texts and the addresses in them; the decision stays."""
    ids = _ids(session, select(QueueItem.id).where(
        QueueItem.created_at < cutoff, QueueItem.status != ItemStatus.PENDING, QueueItem.decided_by != PURGED,
    ).order_by(QueueItem.id).limit(batch))
    if ids:
        session.execute(update(QueueItem).where(QueueItem.id.in_(ids)).values(
            edited_text=None, reason=None, warnings=[], proposed_recipient=None, decided_by=PURGED,
        ))
    return len(ids)


def purge_confirmations(session: Session, cutoff: datetime, now: datetime, batch: int) -> int:
    """Confirmations that expired before ``cutoff`` are deleted."""
    ids = _ids(session, select(Confirmation.id).where(Confirmation.expires_at < cutoff)
               .order_by(Confirmation.id).limit(batch))
    if ids:
        session.execute(delete(Confirmation).where(Confirmation.id.in_(ids)))
    return len(ids)


def former_members(session: Session, cutoff: datetime, limit: int) -> list[str]:
    """Addresses of members who left before ``cutoff``: theirs to be erased."""
    query = (select(Member.email).where(Member.status == MemberStatus.LEFT, Member.left_at < cutoff)
             .order_by(Member.id).limit(limit))
    return list(session.scalars(query))
