"""The outbox: every message binrelay sends is a row here before it is sent.

Alerts have one row per (alert, recipient) and are rendered at send time;
notices (approval requests, answers, confirmations) carry their full bytes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from storage.models import Delivery


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
