"""Flood limiting: one sender cannot bury the coordinators.

Every message is stored (nothing is lost). Past ``limits.sender_messages_per_hour``
messages in one clock hour, a sender's further messages are held without an
approval request each; the coordinators get ONE summary item for that sender
and hour instead, whose count grows as more arrives. Partners and coordinators
are not limited: they are configured, accountable senders.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from relay.approvals.flood import hold_flood_summary, update_flood_summary
from relay.service.runtime import Runtime
from rules.vocabulary import Kind, Source
from storage import limits
from storage.models import ClassificationRecord, Message

log = logging.getLogger("binrelay.flood")

LIMITED_SOURCES = frozenset({Source.MEMBER, Source.UNKNOWN})
LIMITED_KINDS = frozenset({Kind.REPORT, Kind.COMMAND})


BUCKET = "sender_hour"
NO_SENDER = "(no single sender)"


def is_limited(cls: ClassificationRecord) -> bool:
    if cls.kind not in LIMITED_KINDS or cls.source not in LIMITED_SOURCES:
        return False
    return cls.command != "decision"  # a coordinator's token is checked elsewhere


def over_limit(rt: Runtime, session: Session, message: Message, cls: ClassificationRecord) -> bool:
    """Count this message against its sender; True when it is past the limit."""
    if not is_limited(cls):
        return False
    # Mail with no single sender (two From headers, huge padded headers) shares one limit: never none.
    sender = (message.from_address or "").lower() or NO_SENDER
    start = limits.window_start(rt.clock.now(), limits.HOUR)
    count = limits.count(session, BUCKET, limits.address_key(sender), start)
    limit = rt.config.limits.sender_messages_per_hour
    if count <= limit:
        return False
    _summarise(rt, session, message, sender, start, count)
    return True


def _summarise(
    rt: Runtime, session: Session, message: Message, sender: str, start: datetime, count: int
) -> None:
    """Open the sender's summary item on the first message past the limit, else update it."""
    row = limits.window(session, BUCKET, limits.address_key(sender), start)
    assert row is not None  # limits.count just wrote it
    if row.summary_item_id is None:
        item = hold_flood_summary(rt, session, message, sender=sender, since=start, count=count)
        row.summary_item_id = item.id
        log.warning("message %s: its sender is over the limit (%d messages this hour); one summary item %s",
                    message.id, count, item.id)
    else:
        update_flood_summary(session, row.summary_item_id, count=count, latest=message)
