"""Membership by email: AANMELDEN/SUBSCRIBE (double opt-in), AFMELDEN/UNSUBSCRIBE, HELP, settings.

``handle_command`` is the pipeline's handler for the member commands. It never
commits and never sends: changes and answers (outbox rows) join the message's
transaction. The command is read by the rules (``rules.commands``), the ward
by ``rules.places``: the same words and the same wards as everywhere else.
Every answer is a reply (Auto-Submitted: auto-replied), never to an automatic
message or our own address, and a daily cap per address keeps a forged From
from turning binrelay into a mail cannon against a stranger.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from mail.message import ParsedMail
from mail.text import split_names
from relay.config import Config, WardConfig
from relay.delivery import compose
from relay.service.identity import identity_of
from relay.service.runtime import Runtime
from relay.service.tokens import looks_like_token, new_token, token_hash
from rules.addresses import find_tag
from rules.automatic import answer_refusal
from rules.commands import MemberCommand
from rules.loader import RuleSet
from rules.places import postcode_in
from rules.sender import Assurance
from storage import audit, limits
from storage.members import (
    add_confirmation,
    confirmation_by_token_hash,
    member_by_email,
    member_by_unsubscribe_token,
    upsert_member,
    use_confirmation,
)
from storage.models import (
    ClassificationRecord,
    Confirmation,
    ConfirmationAction,
    Member,
    MemberStatus,
    Message,
)
from storage.outbox import enqueue_notice

log = logging.getLogger("binrelay.members")

# Answers to one address per day, all member commands together (confirmations have their own cap).
ANSWERS_PER_DAY = 10
ANSWERS = "member_answers"
CONFIRMATIONS = "confirmations"
NO_COMMAND = MemberCommand("", "", None, None)


# ---------------------------------------------------------------- entry point


def handle_command(rt: Runtime, session: Session, message: Message, mail: ParsedMail,
                   cls: ClassificationRecord) -> None:
    """Carry out a member command (subscribe, confirm, unsubscribe, help, settings)."""
    now = rt.clock.now()
    identity = identity_of(message)
    sender = identity.address or ""
    command = cls.command or ""
    tag = find_tag(mail, rt.config.network.address)
    token = getattr(cls, "token", None) or (tag.token if tag is not None else None)
    if command == "unsubscribe" and tag is not None and tag.kind == "unsubscribe":
        unsubscribe_by_token(rt, session, message, mail, tag.token, now)  # the personal link is the capability
        return
    if identity.assurance == Assurance.FAILED:
        audit.record(session, at=now, actor=sender or "unknown", action="member_command_refused",
                     message_id=message.id, command=command, reason="sender failed verification")
        log.warning("message %s: member command %s from a sender that failed verification; nothing changed",
                    message.id, command)
        return
    if not _is_person(rt.config, mail, sender):
        audit.record(session, at=now, actor=sender or "unknown", action="member_command_ignored",
                     message_id=message.id, command=command, reason="automatic or own address")
        log.info("member command %s from an automatic or own address ignored", command)
        return
    line = rt.classifier.commands.read(mail) or NO_COMMAND
    if command == "confirm":
        confirm(rt, session, message, mail, sender, token, now)
    elif command == "subscribe":
        subscribe(rt, session, message, mail, sender, line, now)
    elif command == "unsubscribe":
        unsubscribe(rt, session, message, mail, sender, line, now, verified=identity.verified)
    elif command == "help":
        send_help(rt, session, message, mail, sender, line, now)
    elif command == "preferences":
        set_preferences(rt, session, message, mail, sender, line, now, verified=identity.verified)
    else:
        audit.record(session, at=now, actor=sender, action="member_command_unknown", message_id=message.id,
                     command=command)


def ward_named(rt: Runtime, text: str | None) -> WardConfig | None:
    """The configured ward a resident means by a name, postcode or street (``rules.places``)."""
    slug = rt.classifier.places.ward_for(text)
    return rt.config.ward(slug) if slug is not None else None


# ---------------------------------------------------------------- subscribe and confirm


def subscribe(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str,
              line: MemberCommand, now: datetime) -> None:
    member = member_by_email(session, sender)
    language = _language(rt.config, line, member)
    ward = ward_named(rt, line.argument)
    if ward is None:
        audit.record(session, at=now, actor=sender, action="subscribe_unknown_ward", message_id=message.id,
                     argument=line.argument)
        _answer(rt, session, mail, sender, "member_unknown_ward", language, now,
                argument=line.argument or "", wards=_ward_list(rt.config), example_postcode=_example_postcode(rt.config))
        return
    if member is not None and member.status == MemberStatus.ACTIVE and member.ward == ward.slug:
        audit.record(session, at=now, actor=sender, action="subscribe_already_member", message_id=message.id,
                     ward=ward.slug)
        _answer(rt, session, mail, sender, "member_already", language, now, ward_name=ward.name)
        return
    if not _may_send_confirmation(rt, session, message, sender, now):
        return
    token = new_token()
    hours = rt.config.limits.confirmation_hours
    add_confirmation(session, email=sender, ward=ward.slug, postcode=postcode_in(line.argument), language=language,
                     token_hash=token_hash(token), now=now, expires_at=now + timedelta(hours=hours))
    audit.record(session, at=now, actor=sender, action="subscribe_requested", message_id=message.id,
                 ward=ward.slug)
    reply_to = compose.plus_address(rt.config.network.address, f"c-{token}")
    _answer(rt, session, mail, sender, "member_confirm", language, now, reply_to=reply_to, count=False,
            ward_name=ward.name, token=token, hours=hours, reply_address=reply_to)


def _may_send_confirmation(rt: Runtime, session: Session, message: Message, sender: str, now: datetime) -> bool:
    """Confirmations are capped per address per day and for the whole network per hour: no mail cannon."""
    config = rt.config.limits
    day, hour = limits.window_start(now, limits.DAY), limits.window_start(now, limits.HOUR)
    if limits.count(session, CONFIRMATIONS, limits.address_key(sender), day) > config.confirmations_per_day:
        why, limit = "per address per day", config.confirmations_per_day
    elif limits.count(session, CONFIRMATIONS, limits.NETWORK_KEY, hour) > config.confirmations_per_hour:
        why, limit = "for the network per hour", config.confirmations_per_hour
    else:
        return True
    audit.record(session, at=now, actor=sender, action="confirmation_rate_limited", message_id=message.id,
                 limit=limit, per=why)
    log.warning("message %s: no confirmation sent: the limit of %d %s is reached", message.id, limit, why)
    return False


def ask_to_confirm(rt: Runtime, session: Session, message: Message, mail: ParsedMail, member: Member,
                   language: str, now: datetime, *, action: ConfirmationAction, change: str,
                   payload: dict[str, Any] | None = None) -> None:
    """An unverified sender's change waits for one reply from the address itself (the capability)."""
    if not _may_send_confirmation(rt, session, message, member.email, now):
        return
    token = new_token()
    hours = rt.config.limits.confirmation_hours
    add_confirmation(session, email=member.email, ward=member.ward, postcode=None, language=language,
                     token_hash=token_hash(token), now=now, expires_at=now + timedelta(hours=hours),
                     action=action, payload=payload)
    audit.record(session, at=now, actor=member.email, action="change_to_confirm", message_id=message.id,
                 change=str(action))
    reply_to = compose.plus_address(rt.config.network.address, f"c-{token}")
    _answer(rt, session, mail, member.email, "member_confirm_change", language, now, reply_to=reply_to,
            count=False, change=change, token=token, hours=hours, reply_address=reply_to)


def confirm(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str,
            token: str | None, now: datetime) -> None:
    row = confirmation_by_token_hash(session, token_hash(token)) if token and looks_like_token(token) else None
    problem = _confirmation_problem(row, sender, now)
    if problem is not None or row is None:
        problem = problem or "unknown"
        audit.record(session, at=now, actor=sender, action="confirm_refused", message_id=message.id, reason=problem)
        language = row.language if row is not None else _language(rt.config, rt.classifier.commands.read(mail), None)
        _answer(rt, session, mail, sender, "member_confirm_failed", language, now, reason=problem)
        return
    if not use_confirmation(session, row.id, now):  # a second reply, processed at the same moment
        audit.record(session, at=now, actor=sender, action="confirm_refused", message_id=message.id, reason="used")
        return
    if row.action != ConfirmationAction.SUBSCRIBE:
        confirm_change(rt, session, message, mail, row, now)
        return
    existing = member_by_email(session, sender)
    previous = existing.ward if existing is not None and existing.status == MemberStatus.ACTIVE else None
    member, created = upsert_member(session, email=sender, ward=row.ward, now=now, postcode=row.postcode,
                                    language=row.language, unsubscribe_token=new_token())
    audit.record(session, at=now, actor=sender, action="member_joined" if created or previous is None
                 else "member_moved", message_id=message.id, ward=row.ward, previous_ward=previous)
    _answer(rt, session, mail, sender, "member_welcome", member.language, now,
            **_member_context(rt, member, member.language))


def confirm_change(rt: Runtime, session: Session, message: Message, mail: ParsedMail, row: Confirmation,
                   now: datetime) -> None:
    """Carry out what the confirmed reply asked for: leave, a setting, or deliveries again after bounces."""
    member = member_by_email(session, row.email)
    if member is None or member.status == MemberStatus.LEFT:
        audit.record(session, at=now, actor=row.email, action="confirm_refused", message_id=message.id,
                     reason="no longer a member")
        return
    if row.action == ConfirmationAction.UNSUBSCRIBE:
        _leave(rt, session, message, mail, member, "confirmed email", now)
    elif row.action == ConfirmationAction.REENABLE:
        member.status, member.disabled_at = MemberStatus.ACTIVE, None
        member.bounce_score, member.last_bounce_at = 0, None
        audit.record(session, at=now, actor=member.email, action="member_reenabled", message_id=message.id,
                     ward=member.ward)
        _answer(rt, session, mail, member.email, "member_welcome", member.language, now,
                **_member_context(rt, member, member.language))
    elif row.action == ConfirmationAction.PREFERENCES:
        payload = row.payload or {}
        line = MemberCommand(str(payload.get("name", "")), "", payload.get("argument"), row.language)
        _apply_and_answer(rt, session, message, mail, member, line, row.language, now)


def _confirmation_problem(row: Any, sender: str, now: datetime) -> str | None:
    if row is None:
        return "unknown"
    if row.used_at is not None:
        return "used"
    if row.expires_at <= now:
        return "expired"
    if row.email != sender:
        return "other_address"
    return None


# ---------------------------------------------------------------- unsubscribe


def unsubscribe(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str,
                line: MemberCommand, now: datetime, *, verified: bool) -> None:
    """AFMELDEN: at once from a verified sender; otherwise after one reply from the address itself."""
    member = member_by_email(session, sender)
    language = _language(rt.config, line, member)
    if member is None or member.status == MemberStatus.LEFT:
        audit.record(session, at=now, actor=sender, action="unsubscribe_not_member", message_id=message.id)
        _answer(rt, session, mail, sender, "member_not_member", language, now)
        return
    if not verified:
        ward = rt.config.ward(member.ward)
        change = (f"afmelden voor de berichten van wijk {ward.name if ward else member.ward}" if language == "nl"
                  else f"leave the messages of ward {ward.name if ward else member.ward}")
        ask_to_confirm(rt, session, message, mail, member, language, now,
                       action=ConfirmationAction.UNSUBSCRIBE, change=change)
        return
    _leave(rt, session, message, mail, member, "email", now)


def unsubscribe_by_token(rt: Runtime, session: Session, message: Message, mail: ParsedMail, token: str,
                         now: datetime) -> None:
    """List-Unsubscribe: the personal token is the proof, whoever's address the mail came from."""
    member = member_by_unsubscribe_token(session, token) if looks_like_token(token) else None
    if member is None or member.status == MemberStatus.LEFT:
        # A stale or forged link: nothing to do, and no answer (the member may have left already).
        audit.record(session, at=now, actor=identity_of(message).address or "unknown", action="unsubscribe_link_unused",
                     message_id=message.id, reason="unknown token" if member is None else "already left")
        return
    _leave(rt, session, message, mail, member, "list-unsubscribe", now)


def _leave(rt: Runtime, session: Session, message: Message, mail: ParsedMail, member: Member, how: str,
           now: datetime) -> None:
    ward = rt.config.ward(member.ward)
    member.status, member.left_at = MemberStatus.LEFT, now
    audit.record(session, at=now, actor=member.email, action="member_left", message_id=message.id,
                 ward=member.ward, via=how)
    if _is_person(rt.config, mail, member.email):
        _answer(rt, session, mail, member.email, "member_goodbye", member.language, now,
                ward_name=ward.name if ward else member.ward)


# ---------------------------------------------------------------- help and preferences


def send_help(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str,
              line: MemberCommand, now: datetime) -> None:
    member = member_by_email(session, sender)
    active = member if member is not None and member.status == MemberStatus.ACTIVE else None
    language = _language(rt.config, line, active)
    context = _member_context(rt, active, language) if active else {"ward_name": None, "settings": []}
    audit.record(session, at=now, actor=sender, action="member_help", message_id=message.id)
    _answer(rt, session, mail, sender, "member_help", language, now, wards=_ward_list(rt.config),
            categories=_category_names(rt.classifier.rules, language), **context)


def set_preferences(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str,
                    line: MemberCommand, now: datetime, *, verified: bool) -> None:
    """A setting: at once from a verified sender; otherwise after one reply from the address itself."""
    member = member_by_email(session, sender)
    if member is None or member.status != MemberStatus.ACTIVE:
        audit.record(session, at=now, actor=sender, action="preferences_not_member", message_id=message.id)
        _answer(rt, session, mail, sender, "member_not_member", _language(rt.config, line, None), now)
        return
    language = _language(rt.config, line, member)
    if not verified and isinstance(apply_preferences(rt.classifier.rules, member.preferences or {}, line), dict):
        written = " ".join(part for part in (line.word.upper(), line.argument or "") if part)
        ask_to_confirm(rt, session, message, mail, member, language, now, action=ConfirmationAction.PREFERENCES,
                       change=f"instelling {written}" if language == "nl" else f"setting {written}",
                       payload={"name": line.name, "argument": line.argument})
        return
    _apply_and_answer(rt, session, message, mail, member, line, language, now)


def _apply_and_answer(rt: Runtime, session: Session, message: Message, mail: ParsedMail, member: Member,
                      line: MemberCommand, language: str, now: datetime) -> None:
    changed = apply_preferences(rt.classifier.rules, member.preferences or {}, line)
    context: dict[str, Any] = {"categories": _category_names(rt.classifier.rules, language)}
    if isinstance(changed, list):
        audit.record(session, at=now, actor=member.email, action="preferences_not_understood",
                     message_id=message.id, unknown=changed)
        _answer(rt, session, mail, member.email, "member_preferences", language, now, unknown=changed,
                **context, **_member_context(rt, member, language))
        return
    member.preferences = changed
    audit.record(session, at=now, actor=member.email, action="preferences_changed", message_id=message.id,
                 preferences=changed)
    _answer(rt, session, mail, member.email, "member_preferences", language, now, unknown=[],
            **context, **_member_context(rt, member, language))


def apply_preferences(rules: RuleSet, current: dict[str, Any], line: MemberCommand) -> dict[str, Any] | list[str]:
    """The new preferences after one command, or the category names that were not understood."""
    updated = dict(current)
    if line.name == "everything":
        return {"urgent_only": False, "categories": [], "digest": False}
    # Urgent-only and the daily digest are two ways of receiving: the latest command wins.
    if line.name == "urgent_only":
        updated["urgent_only"], updated["digest"] = True, False
    elif line.name == "digest":
        updated["digest"], updated["urgent_only"] = True, False
    elif line.name == "categories":
        categories, unknown = parse_categories(rules, line.argument or "")
        if unknown or not categories:
            return unknown or [""]
        updated["categories"] = categories
    updated.setdefault("urgent_only", False)
    updated.setdefault("categories", [])
    updated.setdefault("digest", False)
    return updated


def parse_categories(rules: RuleSet, text: str) -> tuple[list[str], list[str]]:
    """("inbraak, vermissing en brand") -> (["burglary", "fire", "missing_person"], unknown names)."""
    found: set[str] = set()
    unknown: list[str] = []
    for part in split_names(text):
        name = " ".join(part.split()).strip(" .!?:-").lower()
        if not name:
            continue
        category = rules.category_named(name)
        if category is None:
            unknown.append(name)
        else:
            found.add(category)
    return sorted(found), unknown


def describe_preferences(rules: RuleSet, preferences: dict[str, Any], language: str) -> list[str]:
    """The member's settings as short lines for an answer."""
    english = language == "en"
    lines = []
    if preferences.get("urgent_only"):
        lines.append("Only urgent alerts" if english else "Alleen spoedberichten")
    categories = preferences.get("categories") or []
    if categories:
        names = ", ".join(rules.name(c, language) for c in categories if c in rules.categories)
        lines.append(f"Categories: {names} (urgent alerts always)" if english
                     else f"Categorieën: {names} (spoedberichten altijd)")
    if preferences.get("digest"):
        lines.append("Non-urgent alerts once a day in a digest" if english
                     else "Niet-spoedeisende berichten één keer per dag in een overzicht")
    if not lines:
        lines.append("All alerts of your ward, as they come" if english
                     else "Alle berichten van je wijk, zodra ze er zijn")
    return lines


# ---------------------------------------------------------------- answers


def _answer(rt: Runtime, session: Session, mail: ParsedMail, recipient: str, template: str, language: str,
            now: datetime, *, reply_to: str | None = None, count: bool = True, **context: Any) -> None:
    """Queue one answer; plain answers are capped per address per day (the confirmation has its own cap)."""
    day = limits.window_start(now, limits.DAY)
    if count and limits.count(session, ANSWERS, limits.address_key(recipient), day) > ANSWERS_PER_DAY:
        audit.record(session, at=now, actor=recipient, action="member_answer_suppressed", template=template)
        log.warning("answer %s not sent: the daily cap of %d answers to one address is reached",
                    template, ANSWERS_PER_DAY)
        return
    rendered = rt.templates.render(template, language, **context)
    raw = compose.notice(
        rt.config, to=recipient, subject=rendered.subject, body=rendered.body, now=now,
        reply_to=reply_to or rt.config.network.address, in_reply_to=mail.message_id,
        references=mail.references[-10:], auto_submitted="auto-replied",
    )
    enqueue_notice(session, recipient=recipient, raw=raw, purpose=template, now=now)


def _member_context(rt: Runtime, member: Member, language: str) -> dict[str, Any]:
    ward = rt.config.ward(member.ward)
    return {"ward_name": ward.name if ward else member.ward,
            "settings": describe_preferences(rt.classifier.rules, member.preferences or {}, language)}


def _ward_list(config: Config) -> list[dict[str, Any]]:
    return [{"name": ward.name, "postcodes": ", ".join(ward.postcodes)} for ward in config.wards]


def _example_postcode(config: Config) -> str | None:
    return next((f"{ward.postcodes[0]} AB" for ward in config.wards if ward.postcodes), None)


def _category_names(rules: RuleSet, language: str) -> str:
    return ", ".join(rules.name(category, language) for category in rules.categories)


def _language(config: Config, line: MemberCommand | None, member: Member | None) -> str:
    """The language the command was written in; else the member's; else the network's."""
    if line is not None and line.language in ("nl", "en"):
        return line.language
    if member is not None and member.language in ("nl", "en"):
        return member.language
    return config.network.language



def _is_person(config: Config, mail: ParsedMail, address: str) -> bool:
    """May we answer this address? Not an automatic message, not ourselves, a real address."""
    return answer_refusal(mail, address, config.network.address) is None
