"""Bounces: a hard failure counts against the member's address.

Two roads lead here: the SMTP server refusing a recipient with 5xx at send
time (``relay.delivery.sender``), and a bounce message arriving later in the
mailbox (``handle_bounce``, called by the pipeline for kind ``bounce``). Both
add one to the member's ``bounce_score``; at ``delivery.bounce_disable_threshold``
the member is disabled and the ward's coordinators are told. Soft bounces
(4.x.x: mailbox full, greylisting) do not count.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.orm import Session

from mail.message import ParsedMail
from relay.delivery import compose
from relay.service.runtime import Runtime
from rules.bounces import Bounce, detect_bounce
from storage import audit
from storage.members import member_by_email
from storage.models import ClassificationRecord, Delivery, Member, MemberStatus, Message
from storage.outbox import enqueue_notice

log = logging.getLogger("binrelay.bounces")


def handle_bounce(rt: Runtime, session: Session, message: Message, mail: ParsedMail, cls: ClassificationRecord) -> None:
    """Find whose address bounced (VERP id first, then the named recipients) and count it."""
    now = rt.clock.now()
    bounce = detect_bounce(mail, rt.config.network.address)
    if bounce is None:
        log.info("message %s classified as bounce but no failure found in it; dropped", message.id)
        audit.record(session, at=now, actor="system", action="bounce_unreadable", message_id=message.id)
        return
    member = bounced_member(session, bounce)
    if member is None:
        log.info("bounce in message %s for no known member; dropped", message.id)
        audit.record(session, at=now, actor="system", action="bounce_unknown", message_id=message.id,
                     verp_id=bounce.verp_id, recipients=len(bounce.recipients))
        return
    if not bounce.permanent:
        log.info("soft bounce (%s) for member %s; not counted", bounce.status, member.id)
        return
    count_hard_bounce(rt, session, member, now=now, reason=bounce.diagnostic or bounce.status or "bounce",
                      message_id=message.id)


def bounced_member(session: Session, bounce: Bounce) -> Member | None:
    if bounce.verp_id and bounce.verp_id.isdigit():
        delivery = session.get(Delivery, int(bounce.verp_id))
        if delivery is not None:
            member = session.get(Member, delivery.member_id) if delivery.member_id else None
            return member or member_by_email(session, delivery.recipient)
    for address in bounce.recipients:
        member = member_by_email(session, address)
        if member is not None:
            return member
    return None


def count_hard_bounce(rt: Runtime, session: Session, member: Member, *, now: datetime, reason: str,
                      message_id: int | None = None) -> bool:
    """Add one hard bounce; disable the member at the threshold. True when this disabled them."""
    member.bounce_score = (member.bounce_score or 0) + 1
    threshold = rt.config.delivery.bounce_disable_threshold
    log.info("member %s: hard bounce %d of %d", member.id, member.bounce_score, threshold)
    if member.status != MemberStatus.ACTIVE or member.bounce_score < threshold:
        return False
    member.status = MemberStatus.DISABLED
    member.disabled_at = now
    audit.record(session, at=now, actor="system", action="member_disabled_bounces", message_id=message_id,
                 member_id=member.id, ward=member.ward, bounce_score=member.bounce_score, reason=reason[:300])
    tell_coordinators(rt, session, member, now=now, reason=reason)
    return True


def tell_coordinators(rt: Runtime, session: Session, member: Member, *, now: datetime, reason: str) -> None:
    config = rt.config
    recipients = config.coordinators_of(member.ward) or list(config.network.coordinators)
    ward = config.ward(member.ward)
    for address in recipients:
        rendered = rt.templates.render(
            "bounce_member_disabled", config.network.language,
            member_email=member.email, member_name=member.name or "", ward=ward.name if ward else member.ward,
            bounces=member.bounce_score, reason=compose.header_safe(reason, limit=300),
        )
        raw = compose.notice(config, to=address, subject=rendered.subject, body=rendered.body, now=now)
        enqueue_notice(session, recipient=address, raw=raw, purpose="bounce_notice", now=now)
