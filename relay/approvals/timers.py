"""Reminders, escalations and expiry of undecided items.

All state is in the database: ``reminded_at`` / ``escalated_at`` / the
``expired`` status are set by a conditional UPDATE in the same transaction
that puts the notices in the outbox. A crash before the commit leaves the
item due (it is sent after the restart); a crash after it leaves it done (it
is not sent twice); two processes cannot both win the UPDATE.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from relay.approvals.decide import asked_coordinators
from relay.approvals.requests import approvers_of, request_context, send_request
from relay.approvals.tokens import token_for_resend
from relay.delivery.compose import notice
from relay.service import texts
from relay.service.runtime import Runtime
from storage import audit
from storage.models import QueueItem
from storage.outbox import enqueue_notice
from storage.queue import due_ids, expire_item, expired_ids, mark_timer_done

log = logging.getLogger("binrelay.approvals")

RUN_DUE_SECONDS = 30


def run_due(rt: Runtime) -> int:
    """Send every reminder, escalation and expiry notice due now; returns how many items were handled."""
    now = rt.clock.now()
    handled = 0
    with rt.sessions() as session:
        expired = expired_ids(session, now)
        escalations = due_ids(session, "escalate", now)
        reminders = due_ids(session, "remind", now)
    for item_id in expired:
        handled += _in_transaction(rt, item_id, now, _expire)
    for item_id in escalations:
        handled += _in_transaction(rt, item_id, now, _escalate)
    for item_id in reminders:
        if item_id not in escalations:
            handled += _in_transaction(rt, item_id, now, _remind)
    return handled


def _in_transaction(rt: Runtime, item_id: int, now: datetime,
                    step: Callable[[Runtime, Session, QueueItem, datetime], bool]) -> int:
    """One item, one transaction: a failure rolls back that item only."""
    try:
        with rt.sessions() as session, session.begin():
            item = session.get(QueueItem, item_id)
            return int(item is not None and step(rt, session, item, now))
    except Exception:
        log.exception("queue item %s: timer step failed; retried at the next run", item_id)
        return 0


def _remind(rt: Runtime, session: Session, item: QueueItem, now: datetime) -> bool:
    if not mark_timer_done(session, item.id, "remind", now):
        return False  # decided, or another process reminded
    token, renewed = token_for_resend(rt.signer, item)
    sent = send_request(rt, session, item, token, now=now, notice="reminder")
    audit.record(session, at=now, actor="system", action="reminded", queue_item_id=item.id,
                 recipients=len(sent), token_renewed=renewed)
    return True


def _escalate(rt: Runtime, session: Session, item: QueueItem, now: datetime) -> bool:
    if not mark_timer_done(session, item.id, "escalate", now):
        return False
    mark_timer_done(session, item.id, "remind", now)  # an escalation replaces a missed reminder
    session.refresh(item)
    token, renewed = token_for_resend(rt.signer, item)
    # The ward's coordinators get it again too: the first valid answer of anyone counts.
    recipients = [*rt.config.network.coordinators]
    recipients += [a for a in approvers_of(rt.config, item.proposed_wards or []) if a not in recipients]
    sent = send_request(rt, session, item, token, now=now, notice="escalation", recipients=recipients)
    audit.record(session, at=now, actor="system", action="escalated", queue_item_id=item.id,
                 recipients=len(sent), token_renewed=renewed)
    return True


def _expire(rt: Runtime, session: Session, item: QueueItem, now: datetime) -> bool:
    if not expire_item(session, item.id, now):
        return False
    session.refresh(item)
    language = texts.language_of(rt.config)
    context: dict[str, Any] = request_context(rt, session, item, language)
    rendered = rt.templates.render("approval_expired", language, **context)
    recipients = asked_coordinators(rt.config, item)
    for recipient in recipients:
        raw = notice(rt.config, to=recipient, subject=rendered.subject, body=rendered.body, now=now)
        enqueue_notice(session, recipient=recipient, raw=raw, purpose="approval_expired", now=now)
    audit.record(session, at=now, actor="system", action="expired", queue_item_id=item.id,
                 recipients=len(recipients))
    return True


def schedule(scheduler: Any, rt: Runtime) -> None:
    """Run ``run_due`` every 30 seconds; missed runs collapse into one, never two at once."""
    scheduler.add_job(
        _guarded_run_due, "interval", seconds=RUN_DUE_SECONDS, args=[rt], id="approvals.run_due",
        coalesce=True, max_instances=1, replace_existing=True,
    )


def _guarded_run_due(rt: Runtime) -> None:
    try:
        count = run_due(rt)
    except Exception:
        log.exception("approval timers failed; retried at the next run")
        return
    if count:
        log.info("approval timers: %d item(s) reminded, escalated or expired", count)
