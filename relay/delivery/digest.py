"""DAGELIJKS: members who chose a daily digest get non-urgent alerts once a day.

``publish_alert`` leaves digest members out of a non-urgent alert's fan-out
(urgent alerts always go at once); ``send_digests`` then queues one message per
such member with every alert of their ward since their previous digest. It is
safe to run often (e.g. hourly) and in several processes: a member gets at
most one digest per local day (``storage.workers.claim_job`` per member and
date, in the transaction that queues it) and per ``MIN_INTERVAL``. The
previous digest is the member's newest outbox row with purpose ``digest``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from relay.delivery import compose
from relay.delivery.render import source_label_in, unsubscribe_address
from relay.service.runtime import Runtime
from relay.service.texts import category_label
from rules.loader import RuleSet
from storage.members import active_members
from storage.models import Alert, Member
from storage.outbox import enqueue_notice, last_notice_at
from storage.queue import alerts_between
from storage.workers import claim_job

log = logging.getLogger("binrelay.delivery")

MIN_INTERVAL = timedelta(hours=20)
LOOKBACK = timedelta(days=7)  # never gather more than a week, however long since the last digest


def wants_digest(member: Member) -> bool:
    return bool((member.preferences or {}).get("digest"))


def _local(rt: Runtime, now: datetime) -> datetime:
    return now.astimezone(ZoneInfo(rt.config.delivery.timezone))


def digest_due(rt: Runtime, now: datetime | None = None) -> bool:
    """Is it the configured digest hour (or later) today, local time?"""
    return _local(rt, now or rt.clock.now()).hour >= rt.config.delivery.digest_hour


def send_digests(rt: Runtime, now: datetime | None = None) -> int:
    """Queue today's digests; returns how many. One transaction."""
    now = now or rt.clock.now()
    queued = 0
    with rt.sessions() as session, session.begin():
        members = [m for m in active_members(session) if wants_digest(m)]
        for member in members:
            queued += _digest_for(rt, session, member, now)
    if queued:
        log.info("queued %d daily digests", queued)
    return queued


def _digest_for(rt: Runtime, session: Session, member: Member, now: datetime) -> int:
    last = last_notice_at(session, member.id, "digest")
    if last is not None and now - last < MIN_INTERVAL:
        return 0
    # After the previous digest (which took everything up to its own time), or
    # from the moment the member joined.
    since = max(last if last is not None else member.joined_at - timedelta(microseconds=1), now - LOOKBACK)
    alerts = [a for a in alerts_between(session, since, now) if _belongs(member, a)]
    if not alerts:
        return 0
    if not claim_job(session, f"digest:{member.id}", _local(rt, now).date().isoformat(), rt.worker_id, now):
        return 0  # another process queued this member's digest today
    language = member.language if member.language in ("nl", "en") else rt.config.network.language
    ward = rt.config.ward(member.ward)
    rendered = rt.templates.render(
        "alert_digest", language,
        ward=ward.name if ward else member.ward,
        items=[_item(rt.classifier.rules, alert, language) for alert in alerts],
        network_address=rt.config.network.address,
        unsubscribe_address=unsubscribe_address(rt.config, member),
    )
    raw = compose.notice(
        rt.config, to=member.email, subject=rendered.subject, body=rendered.body, now=now,
        reply_to=rt.config.network.address,
        extra_headers={
            "List-Unsubscribe": f"<mailto:{unsubscribe_address(rt.config, member)}?subject=AFMELDEN>",
            "Precedence": "list",
        },
    )
    row = enqueue_notice(session, recipient=member.email, raw=raw, purpose="digest", now=now)
    row.member_id = member.id
    return 1


def _belongs(member: Member, alert: Alert) -> bool:
    """A non-urgent alert of the member's ward in a category they want."""
    if alert.urgency == "urgent" or member.ward not in (alert.wards or []):
        return False
    categories = (member.preferences or {}).get("categories") or []
    return not categories or (alert.category or "other") in categories


def _item(rules: RuleSet, alert: Alert, language: str) -> dict[str, Any]:
    return {
        "category": category_label(rules, alert.category, language),
        "subject": compose.header_safe(alert.subject or ""),
        "source": source_label_in(alert, language),
        "text": (alert.body or "").strip(),
    }
