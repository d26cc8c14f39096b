"""Retention: personal data goes after ``retention.days``; the statistics stay.

What is purged (see docs/privacy.md): a message's raw bytes, text, subject,
sender and Message-ID; an alert's text and original sender; the bytes of sent
notices and the addresses of finished deliveries; the actor of old audit
events. What stays: the classification (source, kind, category, wards,
urgency), queue decisions and their times, delivery counts: everything the
monthly report needs. Idempotent and batched; the daemon runs it daily.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import String, cast, literal, select, update
from sqlalchemy.orm import Session

from relay.runtime import Runtime
from storage.models import Alert, AuditEvent, Delivery, Message

log = logging.getLogger("binrelay.retention")

BATCH = 1000
PURGED = "purged"


@dataclass
class PurgeStats:
    messages: int = 0
    alerts: int = 0
    deliveries: int = 0
    audit_events: int = 0

    @property
    def total(self) -> int:
        return self.messages + self.alerts + self.deliveries + self.audit_events


def purge(rt: Runtime, now: datetime) -> PurgeStats:
    """Purge everything older than the retention period, one batch per transaction."""
    cutoff = now - timedelta(days=rt.config.retention.days)
    stats = PurgeStats()
    for name, step in (("messages", _messages), ("alerts", _alerts), ("deliveries", _deliveries),
                       ("audit_events", _audit_events)):
        while True:
            with rt.sessions() as session, session.begin():
                done = step(session, cutoff, now)
            setattr(stats, name, getattr(stats, name) + done)
            if done < BATCH:
                break
    if stats.total:
        log.info("retention: purged %d messages, %d alerts, %d deliveries, %d audit events older than %s",
                 stats.messages, stats.alerts, stats.deliveries, stats.audit_events, cutoff.date())
    return stats


def _ids(session: Session, query: object) -> list[int]:
    return list(session.scalars(query))  # type: ignore[call-overload]


def _messages(session: Session, cutoff: datetime, now: datetime) -> int:
    ids = _ids(session, select(Message.id).where(Message.received_at < cutoff, Message.purged_at.is_(None))
               .order_by(Message.id).limit(BATCH))
    if ids:
        session.execute(update(Message).where(Message.id.in_(ids)).values(
            raw=None, body_text=None, subject=None, from_address=None, message_id=None, error=None,
            purged_at=now,
        ))
    return len(ids)


def _alerts(session: Session, cutoff: datetime, now: datetime) -> int:
    ids = _ids(session, select(Alert.id).where(Alert.created_at < cutoff, Alert.body.is_not(None))
               .order_by(Alert.id).limit(BATCH))
    if ids:
        session.execute(update(Alert).where(Alert.id.in_(ids)).values(body=None, original_sender=None))
    return len(ids)


def _deliveries(session: Session, cutoff: datetime, now: datetime) -> int:
    """Finished deliveries lose their bytes and address (unique per alert: a stand-in per row)."""
    ids = _ids(session, select(Delivery.id).where(
        Delivery.created_at < cutoff, Delivery.status.in_(("sent", "failed")),
        Delivery.recipient.not_like(f"{PURGED}-%"),
    ).order_by(Delivery.id).limit(BATCH))
    if ids:
        session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(
            raw=None, last_error=None, recipient=literal(f"{PURGED}-") + cast(Delivery.id, String),
        ))
    return len(ids)


def _audit_events(session: Session, cutoff: datetime, now: datetime) -> int:
    ids = _ids(session, select(AuditEvent.id).where(AuditEvent.at < cutoff, AuditEvent.actor != PURGED)
               .order_by(AuditEvent.id).limit(BATCH))
    if ids:
        session.execute(update(AuditEvent).where(AuditEvent.id.in_(ids)).values(actor=PURGED, detail={}))
    return len(ids)
