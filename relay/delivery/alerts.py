"""From an approved queue item to an alert and its outbox rows.

``publish_alert`` writes everything the fan-out needs in the caller's
transaction: the Alert, one outbox row per active member of the target wards
(rendered only at send time, so 5000 members cost 5000 small rows, not 5000
messages), and one complete notice per partner the coordinator named.
Nothing here talks SMTP.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mail.message import Attachment
from relay.config import Config, PartnerConfig
from relay.delivery import compose
from relay.delivery.scrub import MemberScrub
from relay.service.facts import facts_of
from relay.service.runtime import Runtime
from relay.service.texts import category_label
from relay.service.tokens import new_token
from rules.vocabulary import PARTNERS
from storage import audit
from storage.members import active_members_of_wards, member_by_email
from storage.models import Alert, Delivery, Member, Message, QueueItem
from storage.outbox import enqueue_alert_copies, enqueue_notice

log = logging.getLogger("binrelay.delivery")

RESIDENT_LABEL = {"nl": "een buurtbewoner uit {ward}", "en": "a resident of {ward}"}
COORDINATOR_LABEL = {"nl": "een coördinator uit {ward}", "en": "a coordinator in {ward}"}


def publish_alert(rt: Runtime, session: Session, item: QueueItem, *, decided_by: str, now: datetime) -> Alert:
    """Create the Alert, its per-member outbox rows and the partner notices; the caller commits."""
    config = rt.config
    message = item.message
    wards = sorted(set(item.target_wards if item.target_wards is not None else item.proposed_wards or []))
    sender = message.from_address.lower() if message is not None and message.from_address else None
    reporter = member_by_email(session, sender) if sender else None
    scrub = member_scrub(config, item, message, reporter)
    alert = Alert(
        queue_item_id=item.id,
        wards=wards,
        source=item.source,
        source_label=source_label(config, item.source, _home_ward(reporter, wards), partner_name(config, item),
                                  "nl"),
        original_sender=sender,
        category=item.category,
        urgency=item.urgency or "normal",
        subject=scrub(compose.header_safe((message.subject if message is not None else None) or "")),
        body=alert_body(item, message, scrub),
        attachments=[{**ref, "filename": scrub(ref["filename"]) if ref.get("filename") else None}
                     for ref in passing_attachments(config, item.source, message)],
        created_at=now,
    )
    alert.tag = new_token()
    alert.message_id_header = f"<alert-{alert.tag}@{config.network.domain}>"
    session.add(alert)
    session.flush()
    members = 0
    for batch in active_members_of_wards(session, wards):
        chosen = [(row.id, row.email) for row in batch if wants(row.preferences, alert)]
        members += enqueue_alert_copies(session, alert.id, chosen, now)
    partners = _notify_partners(rt, session, item, alert, reporter, now)
    alert.fanned_out_at = now
    item.alert_id = item.alert_id or alert.id
    audit.record(session, at=now, actor=decided_by, action="alert_published", queue_item_id=item.id,
                 message_id=item.message_id, alert_id=alert.id, wards=wards, members=members,
                 partners=partners)
    log.info("alert %s for %s: %d members, %d partner notices", alert.id, ",".join(wards) or "-",
             members, len(partners))
    return alert


def forward_reply(rt: Runtime, session: Session, item: QueueItem, *, now: datetime) -> Delivery | None:
    """Pass an approved member reply to the alert's original sender (never to the ward)."""
    config = rt.config
    recipient = (item.proposed_recipient or "").strip().lower()
    if not recipient:
        log.error("queue item %s: a reply to an alert without a recipient; nothing sent", item.id)
        return None
    alert = session.get(Alert, item.alert_id) if item.alert_id is not None else None
    message = item.message
    sender = message.from_address.lower() if message is not None and message.from_address else None
    reporter = member_by_email(session, sender) if sender else None
    # A partner may need to reach a witness; a resident who wrote the alert is a member like the replier,
    # and no member's address is ever shown to another: that reply is relayed without one.
    to_partner = alert is not None and alert.source in PARTNERS
    scrub = MemberScrub(config) if to_partner else member_scrub(config, item, message, reporter)
    rendered = rt.templates.render(
        "partner_forward_reply", config.network.language,
        alert_subject=alert.subject if alert is not None else "",
        alert_date=alert.created_at if alert is not None else None,
        text=scrub(item.edited_text if item.edited_text is not None else _text_of(message)),
        contact=_contact(message, reporter, config) if to_partner else {},
        to_partner=to_partner,
    )
    raw = compose.notice(
        config, to=recipient, subject=rendered.subject, body=rendered.body, now=now,
        reply_to=(sender if to_partner and sender else config.network.address),
        in_reply_to=alert.message_id_header if alert is not None else None,
    )
    row = enqueue_notice(session, recipient=recipient, raw=raw, purpose="reply_forward", now=now)
    audit.record(session, at=now, actor="system", action="reply_forwarded", queue_item_id=item.id,
                 message_id=item.message_id, alert_id=item.alert_id)
    return row


# ---------------------------------------------------------------- the alert's content


def member_scrub(config: Config, item: QueueItem, message: Message | None, reporter: Member | None) -> MemberScrub:
    """The scrub for this alert: a resident's names go (a partner publishes under its own), other people's
    addresses always go (the network's and partners' stay)."""
    if item.source in PARTNERS or message is None:
        return MemberScrub(config)
    names = [reporter.name] if reporter is not None and reporter.name else []
    names += [name for name, _ in facts_of(message).from_addresses if name]
    return MemberScrub.for_reporter(config, names)


def alert_body(item: QueueItem, message: Message | None, scrub: MemberScrub) -> str:
    """The text members read: the coordinator's edit (only other people's addresses removed: the names in
    it are the coordinator's choice), else the message text with the reporter's names and addresses removed."""
    if item.edited_text is not None:
        return MemberScrub(scrub.config)(item.edited_text)
    return scrub(_text_of(message))


def partner_name(config: Config, item: QueueItem) -> str | None:
    classification = item.message.classification if item.message is not None else None
    if classification is not None and classification.partner_name:
        return classification.partner_name
    partner = config.partner(item.source) if item.source in PARTNERS else None
    return partner.name if partner else None


def source_label(config: Config, source: str, ward: str | None, partner: str | None, language: str) -> str:
    """Who the alert is from, as members read it: the partner's name or "a resident of <ward>"."""
    if source in PARTNERS and partner:
        return partner
    ward_config = config.ward(ward) if ward else None
    ward_name = ward_config.name if ward_config else ("de buurt" if language == "nl" else "the neighbourhood")
    labels = COORDINATOR_LABEL if source == "coordinator" else RESIDENT_LABEL
    return labels.get(language, labels["nl"]).format(ward=ward_name)


def passing_attachments(config: Config, source: str, message: Message | None) -> list[dict[str, Any]]:
    """Partners' attachments pass; residents' only when the operator allows it (privacy)."""
    if message is None or not message.raw:
        return []  # purged: nothing left to pass on
    if source not in PARTNERS and not config.delivery.resident_attachments:
        return []
    found = facts_of(message, config.limits.max_message_bytes).attachments
    return [_attachment_ref(part) for part in found if part.disposition == "attachment" or part.filename]


def _attachment_ref(part: Attachment) -> dict[str, Any]:
    return {"filename": part.filename, "content_type": part.content_type, "index": part.part_index}


def wants(preferences: dict[str, Any] | None, alert: Alert) -> bool:
    """An immediate copy, by the member's preferences (``relay.members.commands``): urgent alerts always;
    otherwise not with ``urgent_only`` or ``digest`` (``relay.delivery.digest`` sends those daily),
    and only the chosen ``categories``."""
    preferences = preferences or {}
    if alert.urgency == "urgent":
        return True
    if preferences.get("urgent_only") or preferences.get("digest"):
        return False
    categories = preferences.get("categories")
    return not categories or (alert.category or "other") in categories


def _text_of(message: Message | None) -> str:
    return (message.body_text if message is not None else None) or ""


def _home_ward(reporter: Member | None, wards: list[str]) -> str | None:
    if reporter is not None:
        return reporter.ward
    return wards[0] if wards else None


# ---------------------------------------------------------------- partners


def partner_address(partner: PartnerConfig, wards: list[str]) -> str | None:
    """The ward's own address at the partner (e.g. the wijkagent), else the general one."""
    for slug in wards:
        if slug in partner.ward_forward_to:
            return partner.ward_forward_to[slug].lower()
    return partner.forward_to


def _notify_partners(rt: Runtime, session: Session, item: QueueItem, alert: Alert, reporter: Member | None,
                     now: datetime) -> list[str]:
    config = rt.config
    sent = []
    for kind in item.partners or []:
        partner = config.partner(kind)
        address = partner_address(partner, alert.wards) if partner else None
        if address is None:
            log.error("alert %s: no forward_to address for partner %s", alert.id, kind)
            continue
        language = config.network.language
        rendered = rt.templates.render(
            "partner_forward", language,
            category=category_label(rt.classifier.rules, alert.category, language),
            urgent=alert.urgency == "urgent",
            wards=", ".join(w.name if (w := config.ward(s)) else s for s in alert.wards),
            subject=alert.subject,
            # Partners read the reporter's own words, names included (they get the contact anyway).
            text=item.edited_text if item.edited_text is not None else _text_of(item.message),
            contact=_contact(item.message, reporter, config),
            attachments=len(alert.attachments),
        )
        raw = compose.notice(config, to=address, subject=rendered.subject, body=rendered.body, now=now,
                             reply_to=alert.original_sender or config.network.address,
                             extra_headers={"X-BIN-Alert": alert.tag})
        enqueue_notice(session, recipient=address, raw=raw, purpose="partner_forward", now=now)
        sent.append(address)
    return sent


def _contact(message: Message | None, reporter: Member | None, config: Config) -> dict[str, str]:
    """The reporter's contact details, for partners only (the police may need them)."""
    contact: dict[str, str] = {}
    senders = facts_of(message, config.limits.max_message_bytes).from_addresses
    if senders:
        name, address = senders[0]
        if name:
            contact["name"] = compose.header_safe(name)
        contact["email"] = address
    if reporter is not None:
        if reporter.name:
            contact["name"] = reporter.name
        contact["email"] = reporter.email
        ward = config.ward(reporter.ward)
        contact["ward"] = ward.name if ward else reporter.ward
        if reporter.postcode:
            contact["postcode"] = reporter.postcode
    return contact
