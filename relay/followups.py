"""Follow-ups: closing an appeal with the members who received it.

A coordinator answers their copy of a sent alert with ``AFGEROND <tekst>`` (or
``RESOLVED <text>``); every member who received the alert gets the closing
message, threaded to their own copy (In-Reply-To/References). A partner's
``AFGEROND`` goes through the coordinators first, like any partner message.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.mime import ParsedMail
from relay.runtime import Runtime
from relay.tokens import new_token
from rules.addresses import find_tag
from storage import audit
from storage.models import Alert, Classification, Delivery, Message, QueueItem
from storage.queue import alert_by_tag, alerts_by_message_ids

log = logging.getLogger("binrelay.followups")

_COPY_ID = re.compile(r"<?alert-([a-z2-7]{16})\.\d+@", re.IGNORECASE)
SUBJECT_PREFIX = {
    "resolved": {"nl": "Afgerond", "en": "Resolved"},
    "update": {"nl": "Update", "en": "Update"},
}


def handle_resolved(rt: Runtime, session: Session, message: Message, mail: ParsedMail,
                    cls: Classification) -> None:
    """The pipeline's handler for the ``resolved`` command."""
    from relay.approvals import hold

    alert = alert_answered(session, mail, rt.config.network.address)
    sender = (message.from_address or "").lower()
    if alert is not None and cls.source in ("police", "municipality"):
        propose_closing(rt, session, message, mail, cls, alert)  # the partner, through the coordinators
        return
    if alert is None or not may_close(rt, alert, sender):
        hold(rt, session, message, mail, cls)  # a coordinator looks at it like any message
        return
    text = closing_text(mail)
    follow_up = publish_followup(rt, session, alert, text, decided_by=sender, now=rt.clock.now())
    log.info("alert %s closed by %s: follow-up alert %s", alert.id, sender, follow_up.id)


def propose_closing(rt: Runtime, session: Session, message: Message, mail: ParsedMail,
                    cls: Classification, alert: Alert) -> None:
    """A partner's AFGEROND becomes an update for the coordinators to pass on, threaded."""
    from relay.approvals.requests import new_item, send_request
    from relay.approvals.tokens import issue_token

    now = rt.clock.now()
    item = new_item(rt, session, message, mail, cls, kind="update", wards=list(alert.wards or []),
                    sender=message.from_address, now=now, alert_id=alert.id)
    item.edited_text = closing_text(mail) or None
    item.warnings = [*item.warnings, {"kind": "update", "evidence": alert.subject}]
    send_request(rt, session, item, issue_token(rt.config, item), now=now)
    audit.record(session, at=now, actor=(message.from_address or "?").lower(), action="closing_proposed",
                 queue_item_id=item.id, message_id=message.id, alert_id=alert.id)


def alert_answered(session: Session, mail: ParsedMail, network_address: str) -> Alert | None:
    """The sent alert a message answers: by its bin+a- tag or a copy's Message-ID."""
    tag = find_tag(mail, network_address)
    if tag is not None and tag.kind == "alert":
        alert = alert_by_tag(session, tag.token)
        if alert is not None:
            return alert
    references = [*(mail.references or []), *([mail.in_reply_to] if mail.in_reply_to else [])]
    for reference in references:
        copy = _COPY_ID.search(reference)
        if copy is not None and (alert := alert_by_tag(session, copy.group(1))) is not None:
            return alert
    found = alerts_by_message_ids(session, references)
    return found[0] if found else alert_of_original(session, references)


def alert_of_original(session: Session, references: list[str]) -> Alert | None:
    """The alert made from a message a partner now answers (their own earlier mail)."""
    ids = [reference.strip() for reference in references if reference.strip()]
    ids += [f"<{i.strip('<>')}>" for i in ids] + [i.strip("<>") for i in ids]
    if not ids:
        return None
    query = (
        select(Alert)
        .join(QueueItem, QueueItem.id == Alert.queue_item_id)
        .join(Message, Message.id == QueueItem.message_id)
        .where(Message.message_id.in_(sorted(set(ids))), Alert.thread_tag.is_(None))
        .order_by(Alert.id.desc())
    )
    return session.scalars(query).first()


def may_close(rt: Runtime, alert: Alert, sender: str) -> bool:
    """Coordinators of the alert's wards and network-wide coordinators close it themselves."""
    config = rt.config
    if sender in config.network.coordinators:
        return True
    return any(config.is_coordinator(sender, ward) for ward in alert.wards or [])


def closing_text(mail: ParsedMail) -> str:
    """The coordinator's words after AFGEROND/RESOLVED, without the quote below them."""
    from relay.replies import reply_text

    text = reply_text(mail).strip()
    first, _, rest = text.partition("\n")
    word, _, remainder = first.strip().partition(" ")
    if word.strip(":.!").lower() in ("afgerond", "resolved", "opgelost", "closed"):
        first = remainder.strip(" :-")
    return "\n".join(part for part in (first, rest.strip()) if part).strip()


def publish_followup(rt: Runtime, session: Session, alert: Alert, text: str, *, decided_by: str,
                     now: datetime, label: str = "resolved") -> Alert:
    """A new alert threaded to ``alert``, for every member who received it."""
    prefix = SUBJECT_PREFIX[label].get(rt.config.network.language, SUBJECT_PREFIX[label]["nl"])
    follow_up = Alert(
        queue_item_id=None,
        wards=list(alert.wards or []),
        source=alert.source,
        source_label=alert.source_label,
        original_sender=alert.original_sender,
        category=alert.category,
        urgency="normal",
        subject=f"{prefix}: {alert.subject}",
        body=text,
        attachments=[],
        tag=new_token(),
        thread_tag=alert.tag,
        created_at=now,
    )
    follow_up.message_id_header = f"<alert-{follow_up.tag}@{rt.config.network.domain}>"
    session.add(follow_up)
    session.flush()
    recipients = _received(session, alert)
    for member_id, address in recipients:
        session.add(Delivery(
            alert_id=follow_up.id, member_id=member_id, recipient=address, purpose="alert",
            status="pending", attempts=0, next_attempt_at=now, created_at=now,
        ))
    follow_up.fanned_out_at = now
    audit.record(session, at=now, actor=decided_by, action="alert_closed", alert_id=alert.id,
                 follow_up_id=follow_up.id, members=len(recipients))
    return follow_up


def _received(session: Session, alert: Alert) -> list[tuple[int, str]]:
    """Members who were sent the alert (or will be: rows still pending count too)."""
    query = (
        select(Delivery.member_id, Delivery.recipient)
        .where(Delivery.alert_id == alert.id, Delivery.member_id.is_not(None),
               Delivery.status.in_(("sent", "pending")))
        .order_by(Delivery.id)
    )
    return [(member_id, recipient) for member_id, recipient in session.execute(query) if member_id]
