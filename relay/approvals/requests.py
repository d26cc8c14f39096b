"""Holding a message for the coordinators and asking them to decide.

``hold`` turns a routed message into a pending queue item and puts one
approval request per coordinator in the outbox, all in the caller's
transaction. The request is a template the operator can override; this module
only gathers what the coordinator needs to decide.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from mail.message import ParsedMail
from relay.approvals.merging import Duplicate, find_duplicate, group_of, merging_on, remember_report
from relay.approvals.tokens import issue_token, placeholder_hash
from relay.config import Config
from relay.delivery import compose
from relay.delivery.scrub import public_address
from relay.service import texts
from relay.service.facts import facts_of
from relay.service.identity import identity_of
from relay.service.runtime import Runtime
from rules.addresses import find_tag
from rules.safeguards import AttachmentInfo, Safeguards, other_addresses
from rules.vocabulary import PARTNERS
from storage import audit
from storage.members import member_by_email
from storage.models import Alert, ClassificationRecord, ItemKind, ItemStatus, Message, QueueItem
from storage.outbox import enqueue_notice
from storage.queue import add_item, alert_by_tag, alerts_by_message_ids, merged_count

log = logging.getLogger("binrelay.approvals")

# The coordinator reads the message in the request; beyond this it is cut.
MAX_REQUEST_TEXT = 8000
MAX_EXPLANATION_LINES = 12
MAX_MERGED_SHOWN = 10  # merged reports a request shows in full (the newest)


# ---------------------------------------------------------------- who decides


def approvers_of(config: Config, wards: list[str]) -> list[str]:
    """Who is asked: the wards' coordinators, plus the network-wide ones when
    there is no ward or a ward has no coordinator of its own."""
    recipients: list[str] = []
    need_network = not wards
    for slug in wards:
        coordinators = config.coordinators_of(slug)
        need_network = need_network or not coordinators
        recipients.extend(coordinators)
    if need_network or not recipients:
        recipients.extend(config.network.coordinators)
    return _unique(recipients)


def may_decide(config: Config, address: str, item: QueueItem) -> bool:
    """A network-wide coordinator, or a coordinator of one of the item's wards."""
    address = address.lower()
    if address in config.network.coordinators:
        return True
    return any(address in config.coordinators_of(slug) for slug in item.proposed_wards or [])


def _unique(addresses: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for address in addresses:
        seen.setdefault(address.lower(), None)
    return list(seen)


# ---------------------------------------------------------------- holding


def hold(rt: Runtime, session: Session, message: Message, mail: ParsedMail, cls: ClassificationRecord) -> QueueItem:
    """Queue a report, an unknown sender's message or a member's reply to an alert."""
    now = rt.clock.now()
    alert = find_alert(session, mail, rt.config.network.address)
    sender = sender_of(message, mail)
    kind = item_kind(cls, alert, sender)
    duplicate = find_duplicate(rt.config, session, message, cls, kind, now)
    if duplicate is not None:
        return hold_duplicate(rt, session, message, mail, cls, duplicate, now)
    wards = sorted(cls.wards or []) or (sorted(alert.wards or []) if alert and kind == ItemKind.REPLY_TO_ALERT else [])
    linked = alert is not None and kind == ItemKind.REPLY_TO_ALERT
    item = new_item(
        rt, session, message, mail, cls, kind=kind, wards=wards, sender=sender, now=now,
        alert_id=alert.id if linked and alert is not None else None,
        proposed_recipient=alert.original_sender if linked and alert is not None else None,
    )
    if merging_on(rt.config, cls, kind):
        remember_report(session, message, cls, item, now)
    token = issue_token(rt.signer, item)
    recipients = send_request(rt, session, item, token, now=now)
    audit.record(
        session, at=now, actor="system", action="held", queue_item_id=item.id, message_id=message.id,
        kind=kind, wards=wards, asked=len(recipients),
    )
    if sender and _acknowledge(rt.config, cls, kind, sender):
        acknowledge(rt, session, message, mail, sender, now)
    return item


def new_item(rt: Runtime, session: Session, message: Message, mail: ParsedMail, cls: ClassificationRecord, *,
             kind: str, wards: list[str], sender: str | None, now: datetime, **links: Any) -> QueueItem:
    """A pending queue item for ``message`` with its timers and warnings (token issued by the caller)."""
    return add_item(
        session,
        message_id=message.id,
        kind=kind,
        source=cls.source,
        category=cls.category,
        urgency=cls.urgency or "normal",
        proposed_wards=wards,
        partners=[],
        token_hash=placeholder_hash(),
        created_at=now,
        warnings=warnings_for(rt, mail, cls, sender),
        **links,
        **timers_for(rt.config, cls.urgency or "normal", now),
    )


def hold_duplicate(rt: Runtime, session: Session, message: Message, mail: ParsedMail, cls: ClassificationRecord,
                   duplicate: Duplicate, now: datetime) -> QueueItem:
    """Join a pending item (one decision for the group), or propose an update to a sent alert."""
    head = duplicate.head
    sent = duplicate.already_sent
    kind = ItemKind.UPDATE if sent else (ItemKind.UNKNOWN_SENDER if cls.source == "unknown" else ItemKind.REPORT)
    item = new_item(
        rt, session, message, mail, cls, kind=kind, wards=list(head.target_wards or head.proposed_wards or []),
        sender=sender_of(message, mail), now=now,
        alert_id=head.alert_id if sent else None, merged_into_id=None if sent else head.id,
    )
    if sent:
        item.warnings = [*item.warnings, {"kind": "update", "evidence": f"#{head.id}",
                                          "score": round(duplicate.score, 2)}]
    else:
        item.status = ItemStatus.MERGED
    remember_report(session, message, cls, head, now)
    token = issue_token(rt.signer, item)
    shown = item if sent else head
    asked = sent or refreshes_request(merged_count(session, head.id) + 1)
    recipients = send_request(rt, session, shown, token, now=now) if asked else []
    audit.record(
        session, at=now, actor="system", action="update_proposed" if sent else "merged",
        queue_item_id=item.id, message_id=message.id, into=head.id, score=round(duplicate.score, 2),
        asked=len(recipients),
    )
    return item


def refreshes_request(group_size: int) -> bool:
    """Whether a group that just grew to ``group_size`` reports is worth a fresh request.

    At 2, 3, 5, 10, 20, 30, 50, 100, ...: the first repeats add what the coordinator
    needs to know; a street reporting one fire must not fill their inbox.
    """
    while group_size >= 10 and group_size % 10 == 0:
        group_size //= 10
    return group_size in (1, 2, 3, 5)


def item_kind(cls: ClassificationRecord, alert: Alert | None, sender: str | None) -> str:
    from_partner = cls.source in PARTNERS
    if alert is not None and sender and sender != (alert.original_sender or "").lower() and not from_partner:
        return ItemKind.REPLY_TO_ALERT
    if cls.source == "unknown":
        return ItemKind.UNKNOWN_SENDER
    return ItemKind.REPORT


def timers_for(config: Config, urgency: str, now: datetime) -> dict[str, datetime]:
    approval = config.approval
    urgent = urgency == "urgent"
    remind = approval.remind_urgent_minutes if urgent else approval.remind_normal_minutes
    escalate = approval.escalate_urgent_minutes if urgent else approval.escalate_normal_minutes
    return {
        "remind_at": now + timedelta(minutes=remind),
        "escalate_at": now + timedelta(minutes=max(escalate, remind)),
        "expires_at": now + timedelta(hours=approval.expire_hours),
    }


def warnings_for(rt: Runtime, mail: ParsedMail, cls: ClassificationRecord, sender: str | None) -> list[dict[str, str]]:
    """What the coordinator should look at twice (the rules' safeguards, and ours)."""
    warnings: list[dict[str, str]] = []
    if cls.source == "unknown":
        warnings.append({"kind": "unknown_sender", "evidence": sender or ""})
    oversized_headers = mail.header_bytes > rt.config.limits.max_header_bytes
    if mail.too_large or mail.defects or oversized_headers:
        evidence = [f"headers of {mail.header_bytes} bytes"] if oversized_headers else []
        warnings.append({"kind": "unreadable", "evidence": "; ".join([*evidence, *mail.defects[:3]])})
    others = other_addresses(f"{mail.subject}\n{mail.text}", lambda a: public_address(rt.config, a))
    others = [a for a in others if a != (sender or "")]
    if others:
        warnings.append({"kind": "email_address", "evidence": ", ".join(others[:5])})
    attachments = [AttachmentInfo(a.filename, a.content_type) for a in mail.attachments]
    warnings.extend(finding.as_dict() for finding in _safeguards(rt).check(mail.text, cls.source, attachments))
    return warnings


def _safeguards(rt: Runtime) -> Safeguards:
    """One Safeguards per runtime (it compiles patterns)."""
    guard = rt.extras.get("safeguards")
    if not isinstance(guard, Safeguards):
        guard = Safeguards(rt.classifier.rules.safeguards, [street for ward in rt.config.wards for street in ward.streets])
        rt.extras["safeguards"] = guard
    return guard


def sender_of(message: Message | None, mail: ParsedMail | None = None) -> str | None:
    """The one sender identity's address (``rules.sender``), as the pipeline stored it."""
    return identity_of(message).address if message is not None else None


# ---------------------------------------------------------------- two-way replies


def find_alert(session: Session, mail: ParsedMail, network_address: str) -> Alert | None:
    """The alert a message answers: by its ``bin+a-<tag>`` address, else by In-Reply-To/References."""
    tag = find_tag(mail, network_address)
    if tag is not None and tag.kind == "alert" and (alert := alert_by_tag(session, tag.token)) is not None:
        return alert
    references = [ref for ref in [mail.in_reply_to, *reversed(mail.references)] if ref]
    alerts = alerts_by_message_ids(session, _id_candidates(references))
    return alerts[-1] if alerts else None


def _id_candidates(references: list[str]) -> list[str]:
    """Each referenced Message-ID, and the alert's own id a member's copy may extend.

    A copy's id may add a per-recipient part to the alert's local part
    (``<alert.member@domain>``), so shorter prefixes at separators are tried too.
    """
    candidates: list[str] = []
    for ref in references[:50]:
        bare = ref.strip().strip("<>")
        candidates.append(bare)
        local, at, domain = bare.rpartition("@")
        for index, char in enumerate(local):
            if char in ".+-_=" and index > 0:
                candidates.append(f"{local[:index]}{at}{domain}")
    return candidates[:500]


# ---------------------------------------------------------------- the request


def request_context(rt: Runtime, session: Session, item: QueueItem, language: str) -> dict[str, Any]:
    """Everything an approval request (or reminder) shows, for the template."""
    config = rt.config
    message = item.message
    facts = facts_of(message, config.limits.max_message_bytes)
    alert = session.get(Alert, item.alert_id) if item.alert_id else None
    return {
        "item": item,
        "kind": item.kind,
        "sender": sender_label(session, config, item, message, language),
        "sender_check": sender_check(message, language),
        "network_wide": bool(config.network.coordinators),
        "unknown_sender": item.kind == ItemKind.UNKNOWN_SENDER,
        "category": texts.category_label(rt.classifier.rules, item.category, language),
        "urgency": texts.URGENCY_LABELS[language].get(item.urgency, item.urgency),
        "urgent": item.urgency == "urgent",
        "category_example": _category_example(rt, item, language),
        "wards": texts.ward_names(config, item.target_wards or item.proposed_wards, language),
        "original_subject": compose.header_safe((message.subject or "") if message is not None else ""),
        "explanation": _explanation(message),
        "warnings": texts.warning_lines(item.warnings or [], language),
        "appearance_advice": _appearance_advice(rt, item, language),
        "text": texts.trim_text(item.edited_text or _text_of(message), MAX_REQUEST_TEXT, language),
        "attachments": [
            f"{a.filename or '(naamloos)'} ({a.content_type}, {texts.human_size(a.size)})"
            for a in facts.attachments
        ],
        "alert_subject": alert.subject if alert else None,
        # The newest merged reports, from their stored text (a group may hold hundreds).
        "merged": [
            texts.trim_text(_text_of(child.message), MAX_REQUEST_TEXT, language)
            for child in group_of(session, item, MAX_MERGED_SHOWN)
        ],
        "merged_count": merged_count(session, item.id),
        "recipient": item.proposed_recipient,
        "expires": texts.local_time(item.expires_at, config.delivery.timezone),
        "received": texts.local_time(item.created_at, config.delivery.timezone),
    }


def _category_example(rt: Runtime, item: QueueItem, language: str) -> str:
    """A name for the CATEGORIE line's example: another category than the rules gave."""
    rules = rt.classifier.rules
    others = [category for category in rules.categories if category not in (item.category, "other")]
    return rules.name(others[0] if others else "other", language)


def sender_check(message: Message | None, language: str) -> dict[str, Any]:
    """How sure binrelay is of the sender, for the top of the request: verified, not verified, or a claim
    that could not be verified (a spoofed police address, a coordinator's address that failed DMARC)."""
    record = message.classification if message is not None else None
    if record is None:
        return {"assurance": "unauthenticated", "claimed": None, "why": ""}
    notes = [str(note) for note in record.sender_notes or []]
    claimed = texts.SOURCE_LABELS[language].get(record.claimed_source or "", record.claimed_source)
    return {"assurance": record.sender_assurance, "claimed": claimed, "why": notes[0] if notes else ""}


def _text_of(message: Message | None) -> str:
    """The message text, as routing stored it."""
    return (message.body_text or "") if message is not None else ""


def sender_label(session: Session, config: Config, item: QueueItem, message: Message | None,
                 language: str) -> str:
    """Who sent it, as the coordinator sees it: a partner's name, an unknown address
    (flagged), or "buurtbewoner uit <ward>" -- a member's address is never shown."""
    address = sender_of(message) or "?"
    cls = message.classification if message is not None else None
    if item.source in PARTNERS:
        return (cls.partner_name if cls and cls.partner_name else None) or texts.PARTNER_LABELS[language][item.source]
    if item.source == "unknown":
        return f"ONBEKENDE afzender {address}" if language == "nl" else f"UNKNOWN sender {address}"
    if item.source == "coordinator":
        return f"coördinator {address}" if language == "nl" else f"coordinator {address}"
    member = member_by_email(session, address) if address != "?" else None
    home = [member.ward] if member is not None else (cls.wards if cls else []) or item.proposed_wards or []
    ward = texts.ward_names(config, home[:1], language) if home else ("de buurt" if language == "nl" else "the area")
    return f"buurtbewoner uit {ward}" if language == "nl" else f"resident of {ward}"


def _explanation(message: Message | None) -> list[str]:
    cls = message.classification if message is not None else None
    lines = [str(line) for line in (cls.explanation if cls else [])]
    return lines[:MAX_EXPLANATION_LINES]


def _appearance_advice(rt: Runtime, item: QueueItem, language: str) -> str | None:
    if not any(isinstance(w, dict) and w.get("kind") == "appearance" for w in item.warnings or []):
        return None
    advice = rt.classifier.rules.safeguards.get("appearance_advice", {}).get(language)
    return str(advice) if advice else None


def send_request(
    rt: Runtime,
    session: Session,
    item: QueueItem,
    token: str,
    *,
    now: datetime,
    notice: str = "request",
    recipients: list[str] | None = None,
) -> list[str]:
    """Put one approval request (or reminder/escalation, per ``notice``) per coordinator in the outbox."""
    config = rt.config
    recipients = recipients if recipients is not None else approvers_of(config, item.proposed_wards or [])
    if not recipients:
        log.error("queue item %s: no coordinator to ask (configure network.coordinators)", item.id)
        return []
    language = texts.language_of(config)
    context = request_context(rt, session, item, language)
    rendered = rt.templates.render(
        "approval_request", language, token=token, notice=notice,
        waiting=_waiting(item.created_at, now, language), **context,
    )
    reply_to = compose.plus_address(config.network.address, token)
    for recipient in recipients:
        raw = compose.notice(
            config, to=recipient, subject=rendered.subject, body=rendered.body, now=now, reply_to=reply_to,
            extra_headers={"X-BIN-Item": str(item.id)},
        )
        enqueue_notice(session, recipient=recipient, raw=raw, purpose=f"approval_{notice}", now=now)
    return recipients


def _waiting(since: datetime, now: datetime, language: str) -> str:
    minutes = max(0, int((now - since).total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    if language == "nl":
        return f"{hours} uur en {minutes} minuten" if hours else f"{minutes} minuten"
    return f"{hours} h {minutes} min" if hours else f"{minutes} minutes"


# ---------------------------------------------------------------- receipt


def _acknowledge(config: Config, cls: ClassificationRecord, kind: str, sender: str | None) -> bool:
    if not config.approval.acknowledge_reports or not sender or kind != ItemKind.REPORT:
        return False
    return cls.source == "member" and sender != config.network.address


def acknowledge(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str, now: datetime) -> None:
    """A short receipt to a resident, with the reminder to call 112 in an emergency."""
    member = member_by_email(session, sender)
    language = member.language if member is not None else texts.language_of(rt.config)
    rendered = rt.templates.render("answer_received", language, original_subject=compose.header_safe(mail.subject))
    raw = compose.notice(
        rt.config, to=sender, subject=rendered.subject, body=rendered.body, now=now,
        in_reply_to=mail.message_id, auto_submitted="auto-replied",
    )
    enqueue_notice(session, recipient=sender, raw=raw, purpose="answer_received", now=now)
