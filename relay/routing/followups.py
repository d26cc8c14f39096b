"""Follow-ups coming in: a coordinator's or partner's AFGEROND in answer to a sent alert.

A coordinator answers their coordinator's copy of a sent alert with
``AFGEROND <tekst>`` (or ``RESOLVED <text>``); every member who received the
alert gets the closing message, threaded to their own copy. A partner's
``AFGEROND`` goes through the coordinators first, like any partner message.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from sqlalchemy.orm import Session

from mail.message import ParsedMail
from mail.quotes import new_text
from relay.approvals.answers import refuse
from relay.approvals.requests import hold, new_item, send_request
from relay.approvals.tokens import issue_token
from relay.delivery.followups import closers_of, followup_right, publish_followup
from relay.service.identity import identity_of
from relay.service.runtime import Runtime
from rules.addresses import find_tag
from rules.commands import CommandReader
from rules.sender import Assurance, SenderIdentity
from rules.vocabulary import PARTNERS
from storage import audit
from storage.models import Alert, ClassificationRecord, ItemKind, Message
from storage.queue import alert_by_tag, alert_made_from, alerts_by_message_ids

log = logging.getLogger("binrelay.followups")

_COPY_ID = re.compile(r"<?alert-([a-z2-7]{16})\.\d+@", re.IGNORECASE)


def handle_resolved(rt: Runtime, session: Session, message: Message, mail: ParsedMail,
                    cls: ClassificationRecord) -> None:
    """The pipeline's handler for the ``resolved`` command (AFGEROND / RESOLVED).

    Only the follow-up capability closes an alert: a token signed for that alert
    and that coordinator, which only their own coordinator's copy carries. A
    partner's closing goes through the coordinators; anything else changes
    nothing and gets a clear answer.
    """
    now = rt.clock.now()
    identity = identity_of(message)
    tag = find_tag(mail, rt.config.network.address)
    if tag is not None and tag.kind == "followup":
        close_with_right(rt, session, message, mail, identity, tag.token, now)
        return
    if cls.source in PARTNERS:
        alert = alert_answered(session, mail, rt.config.network.address)
        if alert is not None:
            propose_closing(rt, session, message, mail, cls, alert)  # the partner, through the coordinators
        else:
            hold(rt, session, message, mail, cls)
        return
    refuse(rt, session, message, mail, identity.address or "", None, "no_followup_right", now)


def close_with_right(rt: Runtime, session: Session, message: Message, mail: ParsedMail,
                     identity: SenderIdentity, token: str, now: datetime) -> None:
    """Publish the closing message when the sender holds this alert's follow-up right; else refuse."""
    if identity.assurance == Assurance.FAILED:
        refuse(rt, session, message, mail, identity.address or "", None, "auth_failed", now)
        return
    sender = identity.address or ""
    alert_id = followup_right(rt.signer, token, sender) if sender else None
    alert = session.get(Alert, alert_id) if alert_id is not None else None
    if alert is None or sender not in closers_of(rt.config, list(alert.wards or [])):
        refuse(rt, session, message, mail, sender, None, "no_followup_right", now)
        return
    text = closing_text(rt.classifier.commands, mail)
    follow_up = publish_followup(rt, session, alert, text, decided_by=sender, now=now)
    log.info("message %s: alert %s closed by a coordinator: follow-up alert %s", message.id, alert.id, follow_up.id)


def propose_closing(rt: Runtime, session: Session, message: Message, mail: ParsedMail,
                    cls: ClassificationRecord, alert: Alert) -> None:
    """A partner's AFGEROND becomes an update for the coordinators to pass on, threaded."""
    now = rt.clock.now()
    item = new_item(rt, session, message, mail, cls, kind=ItemKind.UPDATE, wards=list(alert.wards or []),
                    sender=message.from_address, now=now, alert_id=alert.id)
    item.edited_text = closing_text(rt.classifier.commands, mail) or None
    item.warnings = [*item.warnings, {"kind": "update", "evidence": alert.subject}]
    send_request(rt, session, item, issue_token(rt.signer, item), now=now)
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
    return alert_made_from(session, sorted(set(ids))) if ids else None


def closing_text(commands: CommandReader, mail: ParsedMail) -> str:
    """The coordinator's words after AFGEROND/RESOLVED, without the quote below them."""
    text = new_text(mail.text or "").strip()
    first, _, rest = text.partition("\n")
    resolved = commands.resolved(first)
    if resolved is not None:
        first = resolved[1]
    return "\n".join(part for part in (first.strip(), rest.strip()) if part).strip()
