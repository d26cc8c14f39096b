"""Bounces: a hard failure counts against the member it was sent to, and only then.

Two roads lead here: the SMTP server refusing a recipient with 5xx at send
time (``relay.delivery.sender``), and a bounce message arriving later in the
mailbox (``handle_bounce``, the pipeline's handler for kind ``bounce``). A
bounce message counts only when it comes back to a signed return path
(``relay.delivery.verp``): then it counts against exactly that delivery's
member, whether or not its body names anyone, so formats the parser does not
know still count; a bounce to an unsigned or wrongly signed return path, or
one that only names an address in its text, changes nothing.

The score follows the field's practice (GNU Mailman's bounce processing): at
most one point a day, forgotten after ``delivery.bounce_decay_days`` without
a bounce; one point before the threshold the member is warned; at
``delivery.bounce_disable_threshold`` their alerts are paused, the member is
told how to start them again (one reply) and the ward's coordinators are told.
Delay notices and other soft failures (4.x.x) do not count.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from mail.message import ParsedMail
from relay.delivery import compose
from relay.delivery.verp import signed_delivery
from relay.service.runtime import Runtime
from relay.service.tokens import new_token, token_hash
from rules.addresses import find_tag
from rules.bounces import detect_bounce
from storage import audit
from storage.members import add_confirmation, member_by_email
from storage.models import (
    ClassificationRecord,
    ConfirmationAction,
    Delivery,
    Member,
    MemberStatus,
    Message,
)
from storage.outbox import enqueue_notice

log = logging.getLogger("binrelay.bounces")


def handle_bounce(rt: Runtime, session: Session, message: Message, mail: ParsedMail, cls: ClassificationRecord) -> None:
    """Count a bounce against the member of the signed return path it came back to; else nothing."""
    now = rt.clock.now()
    tag = find_tag(mail, rt.config.network.address)
    delivery_id = signed_delivery(rt.signer, tag.token) if tag is not None and tag.kind == "bounce" else None
    if delivery_id is None:
        why = "no return path of ours" if tag is None or tag.kind != "bounce" else "return path not signed by us"
        log.warning("message %s: a bounce to %s; no score changed", message.id, why)
        audit.record(session, at=now, actor="system", action="bounce_unsigned", message_id=message.id, reason=why)
        return
    member = _member_of(session, delivery_id)
    if member is None:
        log.info("message %s: a bounce for delivery %s, which no member holds; dropped", message.id, delivery_id)
        audit.record(session, at=now, actor="system", action="bounce_unknown", message_id=message.id,
                     delivery_id=delivery_id)
        return
    bounce = detect_bounce(mail, rt.config.network.address)
    if bounce is not None and not bounce.permanent:
        log.info("message %s: a soft bounce (%s) for member %s; not counted", message.id, bounce.status, member.id)
        return
    reason = (bounce.diagnostic or bounce.status) if bounce is not None else None
    count_hard_bounce(rt, session, member, now=now, reason=reason or "returned to its signed return path",
                      message_id=message.id)


def _member_of(session: Session, delivery_id: int) -> Member | None:
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        return None
    member = session.get(Member, delivery.member_id) if delivery.member_id else None
    return member or member_by_email(session, delivery.recipient)


def count_hard_bounce(rt: Runtime, session: Session, member: Member, *, now: datetime, reason: str,
                      message_id: int | None = None) -> bool:
    """Add a hard bounce (at most one a day, after the decay); warn, then pause. True when this paused them."""
    delivery = rt.config.delivery
    last = member.last_bounce_at
    if last is not None and now - last > timedelta(days=delivery.bounce_decay_days):
        member.bounce_score = 0  # the old bounces are forgotten
    elif last is not None and last.date() == now.date():
        log.info("member %s: another hard bounce today; counted once a day", member.id)
        return False
    member.bounce_score = (member.bounce_score or 0) + 1
    member.last_bounce_at = now
    threshold = delivery.bounce_disable_threshold
    log.info("member %s: hard bounce %d of %d", member.id, member.bounce_score, threshold)
    if member.status != MemberStatus.ACTIVE:
        return False
    if member.bounce_score == threshold - 1:
        _tell_member(rt, session, member, "bounce_warning", now=now)
    if member.bounce_score < threshold:
        return False
    member.status = MemberStatus.DISABLED
    member.disabled_at = now
    audit.record(session, at=now, actor="system", action="member_disabled_bounces", message_id=message_id,
                 member_id=member.id, ward=member.ward, bounce_score=member.bounce_score, reason=reason[:300])
    _tell_member(rt, session, member, "bounce_paused", now=now)
    tell_coordinators(rt, session, member, now=now, reason=reason)
    return True


def _tell_member(rt: Runtime, session: Session, member: Member, template: str, *, now: datetime) -> None:
    """The warning before the pause, or the pause itself, with one reply to start again."""
    token = new_token()
    hours = rt.config.limits.confirmation_hours
    add_confirmation(session, email=member.email, ward=member.ward, postcode=None, language=member.language,
                     token_hash=token_hash(token), now=now, expires_at=now + timedelta(hours=hours * 10),
                     action=ConfirmationAction.REENABLE)
    reply_to = compose.plus_address(rt.config.network.address, f"c-{token}")
    ward = rt.config.ward(member.ward)
    rendered = rt.templates.render(template, member.language, ward_name=ward.name if ward else member.ward,
                                   bounces=member.bounce_score, threshold=rt.config.delivery.bounce_disable_threshold,
                                   reply_address=reply_to)
    raw = compose.notice(rt.config, to=member.email, subject=rendered.subject, body=rendered.body, now=now,
                         reply_to=reply_to)
    enqueue_notice(session, recipient=member.email, raw=raw, purpose=template, now=now)


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
