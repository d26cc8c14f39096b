"""Carrying out a decision: one atomic claim, then the consequences.

Email replies and the operator's ``binrelay queue approve/reject`` both come
here. ``decide`` first claims the item with one conditional UPDATE
(``storage.queue.claim_decision``); only the caller that changed the row goes
on to correct the urgency or category it was given (``corrections``), then
publish, answer and tell the others, all in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from relay.approvals.corrections import Change, Corrections, apply_to_claimed, change_lines
from relay.approvals.requests import approvers_of
from relay.config import Config
from relay.delivery import compose
from relay.delivery.alerts import forward_reply, publish_alert
from relay.delivery.followups import publish_followup, send_coordinator_copies
from relay.service import texts
from relay.service.runtime import Runtime
from storage import audit
from storage.members import member_by_email
from storage.models import Alert, ItemKind, ItemStatus, QueueItem
from storage.outbox import enqueue_notice
from storage.queue import claim_decision

log = logging.getLogger("binrelay.approvals")

Outcome = Literal["approve", "reject", "partner_only"]


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str | None = None
    target_wards: list[str] | None = None  # None: the proposed wards
    partners: list[str] = field(default_factory=list)  # partner kinds: police | municipality
    edited_text: str | None = None
    corrections: Corrections = field(default_factory=Corrections)  # SPOED / CATEGORIE lines

    @property
    def status(self) -> str:
        return ItemStatus.REJECTED if self.outcome == "reject" else ItemStatus.APPROVED


def decide(
    rt: Runtime,
    session: Session,
    item: QueueItem,
    decision: Decision,
    *,
    actor: str,
    now: datetime,
    message_id: int | None = None,
    confirm_to: str | None = None,
) -> bool:
    """Decide ``item`` unless someone else already did; True when this call decided it."""
    won = claim_decision(session, item.id, status=decision.status, decided_by=actor, now=now, **_changes(decision))
    if not won:
        return False
    session.refresh(item)
    # Before it is carried out: the alert goes out with the corrected label and SPOED marking.
    changes = apply_to_claimed(rt.config, session, item, decision.corrections, actor=actor, now=now,
                               message_id=message_id)
    audit.record(
        session, at=now, actor=actor, action=decision.status, queue_item_id=item.id, message_id=message_id,
        outcome=decision.outcome, target_wards=item.target_wards, partners=item.partners,
        edited=decision.edited_text is not None, reason=decision.reason,
        corrected=[change.field.value for change in changes],
    )
    carry_out(rt, session, item, decision, actor=actor, now=now)
    tell_coordinators(rt, session, item, decision, actor=actor, now=now, confirm_to=confirm_to, changes=changes)
    # Logs name the role, never the address (the audit table keeps who it was).
    by = "a coordinator" if "@" in actor else actor
    log.info("queue item %s %s by %s (%s)", item.id, decision.status, by, decision.outcome)
    return True


def _changes(decision: Decision) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if decision.reason:
        changes["reason"] = decision.reason[:2000]
    if decision.outcome == "partner_only":
        changes["target_wards"] = []
    elif decision.target_wards is not None:
        changes["target_wards"] = sorted(set(decision.target_wards))
    if decision.partners:
        changes["partners"] = sorted(set(decision.partners))
    if decision.edited_text is not None:
        changes["edited_text"] = decision.edited_text
    return changes


# ---------------------------------------------------------------- consequences


def carry_out(rt: Runtime, session: Session, item: QueueItem, decision: Decision, *, actor: str,
              now: datetime) -> None:
    if decision.outcome == "reject":
        answer_reporter(rt, session, item, now)
    elif item.kind == ItemKind.UPDATE and decision.outcome == "approve":
        publish_update(rt, session, item, actor=actor, now=now)
    elif item.kind == ItemKind.REPLY_TO_ALERT and decision.outcome == "approve":
        forward_reply(rt, session, item, now=now)
    else:
        # Partner-only: target_wards is [], so the alert reaches the partners and no member.
        alert = publish_alert(rt, session, item, decided_by=actor, now=now)
        if alert.wards:
            send_coordinator_copies(rt, session, alert, now)  # with each closer's own follow-up right
        log.info("queue item %s published as alert %s", item.id, alert.id)


def publish_update(rt: Runtime, session: Session, item: QueueItem, *, actor: str, now: datetime) -> None:
    """An approved update goes to everyone who received the alert, threaded to it."""
    alert = session.get(Alert, item.alert_id) if item.alert_id is not None else None
    if alert is None:
        log.error("queue item %s: update without its alert; nothing sent", item.id)
        return
    message = item.message
    text = item.edited_text or ((message.body_text or "") if message is not None else "")
    publish_followup(rt, session, alert, text, decided_by=actor, now=now, label="update")


def answer_reporter(rt: Runtime, session: Session, item: QueueItem, now: datetime) -> None:
    """A resident whose report is rejected hears so, kindly, with the reason."""
    message = item.message
    if message is None or item.source != "member" or item.kind not in (ItemKind.REPORT, ItemKind.REPLY_TO_ALERT):
        return
    reporter = (message.from_address or "").lower()
    if not reporter or reporter == rt.config.network.address:
        return
    member = member_by_email(session, reporter)
    language = member.language if member is not None else texts.language_of(rt.config)
    rendered = rt.templates.render(
        "answer_rejected", language, reason=item.reason, original_subject=compose.header_safe(message.subject or ""),
    )
    raw = compose.notice(rt.config, to=reporter, subject=rendered.subject, body=rendered.body, now=now,
                         in_reply_to=message.message_id, auto_submitted="auto-replied")
    enqueue_notice(session, recipient=reporter, raw=raw, purpose="answer_rejected", now=now)


def outcome_text(item: QueueItem, language: str) -> str:
    if item.status == ItemStatus.REJECTED:
        return "afgewezen" if language == "nl" else "rejected"
    if item.status == ItemStatus.EXPIRED:
        return "verlopen" if language == "nl" else "expired"
    if item.target_wards == [] and item.partners:
        return "alleen doorgegeven aan partner" if language == "nl" else "passed to the partner only"
    if item.kind == ItemKind.REPLY_TO_ALERT:
        return "doorgestuurd aan de afzender" if language == "nl" else "passed to the original sender"
    return "goedgekeurd" if language == "nl" else "approved"


def decision_context(config: Config, item: QueueItem, language: str,
                     corrections: list[str] | None = None) -> dict[str, Any]:
    """What 'who decided what' messages show (``corrections``: the decision's lines, "urgentie: normaal → SPOED")."""
    message = item.message
    target: str | None = None
    if item.status == ItemStatus.APPROVED:
        if item.kind == ItemKind.REPLY_TO_ALERT:
            target = item.proposed_recipient
        elif item.target_wards != [] or not item.partners:
            target = texts.ward_names(config, item.target_wards or item.proposed_wards or [], language)
    return {
        "item": item,
        "decided_by": item.decided_by or "?",
        "decided_at": texts.local_time(item.decided_at, config.delivery.timezone),
        "outcome": outcome_text(item, language),
        "target": target,
        "partners": texts.partner_names(item.partners or [], language),
        "reason": item.reason,
        "corrections": corrections or [],
        "original_subject": compose.header_safe((message.subject if message else None) or f"#{item.id}"),
    }


def asked_coordinators(config: Config, item: QueueItem) -> list[str]:
    """Everyone who was asked about this item (its wards, and network-wide once escalated)."""
    asked = approvers_of(config, item.proposed_wards or [])
    if item.escalated_at is not None:
        asked += [a for a in config.network.coordinators if a not in asked]
    return asked


def tell_coordinators(rt: Runtime, session: Session, item: QueueItem, decision: Decision, *, actor: str,
                      now: datetime, confirm_to: str | None, changes: list[Change] | None = None) -> None:
    """The others hear who decided (and what was corrected); the one who decided by email gets a confirmation."""
    config = rt.config
    language = texts.language_of(config)
    lines = change_lines(rt.classifier.rules, changes or [], language)
    context = decision_context(config, item, language, corrections=lines)
    for recipient in asked_coordinators(config, item):
        if recipient == actor.lower() or recipient == (confirm_to or "").lower():
            continue
        _notice(rt, session, "approval_decided", recipient, context, now, language)
    if confirm_to:
        _notice(rt, session, "answer_confirmed", confirm_to, context, now, language)


def _notice(rt: Runtime, session: Session, template: str, recipient: str, context: dict[str, Any],
            now: datetime, language: str) -> None:
    rendered = rt.templates.render(template, language, **context)
    raw = compose.notice(rt.config, to=recipient, subject=rendered.subject, body=rendered.body, now=now,
                         auto_submitted="auto-replied" if template.startswith("answer_") else "auto-generated")
    enqueue_notice(session, recipient=recipient, raw=raw, purpose=template, now=now)

