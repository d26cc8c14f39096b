"""The one summary item per flooding sender and hour (see ``relay.routing.flood``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from relay.approvals.requests import send_request, timers_for
from relay.approvals.tokens import issue_token, placeholder_hash
from relay.service.runtime import Runtime
from storage import audit
from storage.models import ItemKind, Message, QueueItem
from storage.queue import add_item


def hold_flood_summary(
    rt: Runtime, session: Session, message: Message, *, sender: str, since: datetime, count: int
) -> QueueItem:
    """Open the summary item (it holds the first message past the limit) and ask the coordinators once."""
    now = rt.clock.now()
    cls = message.classification
    wards = sorted(cls.wards or []) if cls is not None else []
    item = add_item(
        session,
        message_id=message.id,
        kind=ItemKind.FLOOD_SUMMARY,
        source=cls.source if cls is not None else "unknown",
        category=cls.category if cls is not None else None,
        urgency="normal",
        proposed_wards=wards,
        partners=[],
        token_hash=placeholder_hash(),
        created_at=now,
        warnings=[_flood_warning(sender, since, count)],
        **timers_for(rt.config, "normal", now),
    )
    token = issue_token(rt.signer, item)
    send_request(rt, session, item, token, now=now)
    audit.record(session, at=now, actor="system", action="held", queue_item_id=item.id, message_id=message.id,
                 kind=ItemKind.FLOOD_SUMMARY, sender=sender, count=count)
    return item


def update_flood_summary(session: Session, item_id: int, *, count: int, latest: Message) -> None:
    """Keep the summary's count current; no new request is sent."""
    item = session.get(QueueItem, item_id)
    if item is None:
        return
    others = [w for w in item.warnings or [] if not (isinstance(w, dict) and w.get("kind") == "flood")]
    flood = next((w for w in item.warnings or [] if isinstance(w, dict) and w.get("kind") == "flood"), None)
    sender = str(flood.get("sender", "")) if flood else (latest.from_address or "")
    since = str(flood.get("since", "")) if flood else ""
    item.warnings = [*others, {"kind": "flood", "evidence": f"{count} berichten sinds {since} van {sender}",
                               "sender": sender, "since": since, "count": count, "latest_message_id": latest.id}]


def _flood_warning(sender: str, since: datetime, count: int) -> dict[str, object]:
    stamp = since.strftime("%Y-%m-%d %H:%M UTC")
    return {"kind": "flood", "evidence": f"{count} berichten sinds {stamp} van {sender}",
            "sender": sender, "since": stamp, "count": count}
