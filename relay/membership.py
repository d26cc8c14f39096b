"""Membership by email: AANMELDEN/SUBSCRIBE (double opt-in), AFMELDEN/UNSUBSCRIBE, HELP, preferences.

``handle_command`` is the pipeline's handler for the member commands. It never
commits and never sends: changes and answers (outbox rows) join the message's
transaction. Every answer is a reply (Auto-Submitted: auto-replied), never to
an automatic message or our own address, and a daily cap per address keeps a
forged From from turning binrelay into a mail cannon against a stranger.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from relay import compose
from relay.config import Config, WardConfig
from relay.mime import ParsedMail, auto_reply_reason, loop_reason
from relay.runtime import Runtime
from relay.tokens import looks_like_token, new_token, token_hash
from rules.addresses import find_tag
from rules.text import clean_subject, fold
from storage import audit
from storage.members import (
    add_confirmation,
    confirmation_by_token_hash,
    confirmations_since,
    member_by_email,
    member_by_unsubscribe_token,
    upsert_member,
    use_confirmation,
)
from storage.models import Classification, Delivery, Member, Message
from storage.outbox import enqueue_notice

log = logging.getLogger("binrelay.membership")

# Answers to one address per day, all member commands together (confirmations count separately).
ANSWERS_PER_DAY = 10
MAX_COMMAND_LINE = 200

# The command words (folded), longest first when matched; the language they are in.
VERBS: dict[str, dict[str, str | None]] = {
    "subscribe": {"aanmelden": "nl", "aanmelding": "nl", "inschrijven": "nl", "subscribe": "en", "join": "en"},
    "unsubscribe": {"afmelden": "nl", "uitschrijven": "nl", "unsubscribe": "en", "leave": "en", "stop": None},
    "help": {"hulp": "nl", "instructies": "nl", "help": None, "info": None},
    "preferences": {"alleen spoed": "nl", "urgent only": "en", "categorieen": "nl", "categories": "en",
                    "dagelijks": "nl", "daily": "en", "alles": "nl", "all": "en"},
}

# Category names members may write (folded), Dutch and English, -> SPEC category ids.
CATEGORY_WORDS: dict[str, str] = {
    "inbraak": "burglary", "inbraken": "burglary", "burglary": "burglary",
    "verdacht": "suspicious", "verdachte situatie": "suspicious", "verdachte situaties": "suspicious",
    "suspicious": "suspicious", "suspicious situation": "suspicious",
    "diefstal": "theft", "theft": "theft",
    "vernieling": "vandalism", "vandalisme": "vandalism", "vandalism": "vandalism",
    "overlast": "nuisance", "nuisance": "nuisance",
    "oplichting": "fraud", "fraude": "fraud", "fraud": "fraud",
    "vermissing": "missing_person", "vermist": "missing_person", "vermissingen": "missing_person",
    "missing person": "missing_person", "missing_person": "missing_person", "missing": "missing_person",
    "brand": "fire", "fire": "fire",
    "verkeer": "traffic", "traffic": "traffic",
    "informatie": "info", "info": "info", "information": "info",
    "overig": "other", "overige": "other", "other": "other",
}
CATEGORY_LABELS: dict[str, tuple[str, str]] = {
    "burglary": ("inbraak", "burglary"), "suspicious": ("verdacht", "suspicious"), "theft": ("diefstal", "theft"),
    "vandalism": ("vernieling", "vandalism"), "nuisance": ("overlast", "nuisance"),
    "fraud": ("oplichting", "fraud"), "missing_person": ("vermissing", "missing person"),
    "fire": ("brand", "fire"), "traffic": ("verkeer", "traffic"), "info": ("informatie", "information"),
    "other": ("overig", "other"),
}
_POSTCODE = re.compile(r"(?<!\d)(\d{4})\s?(?:[a-z]{2})?(?![\da-z])")
_WARD_PREFIX = re.compile(r"^(?:(?:in|voor|for|to)\s+)?(?:de\s+|the\s+)?(?:wijk|ward|buurt|neighbourhood|neighborhood)\s*:?\s+")


@dataclass(frozen=True)
class CommandLine:
    """The member command as written: which command, its word, what followed it, the word's language."""

    command: str | None
    word: str | None  # folded, e.g. "alleen spoed"
    argument: str | None
    language: str | None  # None when the word is the same in both languages (HELP, STOP)


# ---------------------------------------------------------------- entry point


def handle_command(rt: Runtime, session: Session, message: Message, mail: ParsedMail, cls: Classification) -> None:
    """Carry out a member command (subscribe, confirm, unsubscribe, help, preferences)."""
    now = rt.clock.now()
    sender = _sender(message, mail)
    command = cls.command or ""
    tag = find_tag(mail, rt.config.network.address)
    token = getattr(cls, "token", None) or (tag.token if tag is not None else None)
    if command == "unsubscribe" and tag is not None and tag.kind == "unsubscribe":
        unsubscribe_by_token(rt, session, message, mail, tag.token, now)
        return
    if not _is_person(rt.config, mail, sender):
        audit.record(session, at=now, actor=sender or "unknown", action="member_command_ignored",
                     message_id=message.id, command=command, reason="automatic or own address")
        log.info("member command %s from an automatic or own address ignored", command)
        return
    line = read_command(mail)
    if command == "confirm":
        confirm(rt, session, message, mail, sender, token, now)
    elif command == "subscribe":
        subscribe(rt, session, message, mail, sender, line, now)
    elif command == "unsubscribe":
        unsubscribe(rt, session, message, mail, sender, line, now)
    elif command == "help":
        send_help(rt, session, message, mail, sender, line, now)
    elif command == "preferences":
        set_preferences(rt, session, message, mail, sender, line, now)
    else:
        audit.record(session, at=now, actor=sender, action="member_command_unknown", message_id=message.id,
                     command=command)


# ---------------------------------------------------------------- reading the command


def read_command(mail: ParsedMail) -> CommandLine:
    """The member command in the Subject (after Re:/Antw:) or the first line of the reply.

    A bare command in the Subject ("Subscribe") takes its argument from the
    first line when that repeats the command with one ("subscribe 5235 AB").
    """
    in_subject = parse_command_line(clean_subject(mail.subject or ""))
    in_body = parse_command_line(_first_line(mail.text))
    if in_subject.command is None:
        return in_body
    if in_subject.argument is None and in_body.command == in_subject.command and in_body.argument:
        return in_body
    return in_subject


def parse_command_line(line: str) -> CommandLine:
    text = " ".join(line.split())[:MAX_COMMAND_LINE]
    folded = fold(text)
    start = len(folded) - len(folded.lstrip(" .!?:*"))
    folded = folded[start:].rstrip(" .!?:")
    for command, words in VERBS.items():
        for word in sorted(words, key=len, reverse=True):
            if folded == word or folded.startswith((word + " ", word + ":")):
                argument = text[start + len(word):].strip(" :.-!?") or None
                return CommandLine(command, word, argument, words[word])
    return CommandLine(None, None, None, None)


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(">"):
            return stripped
    return ""


# ---------------------------------------------------------------- wards


def resolve_ward(config: Config, text: str | None) -> WardConfig | None:
    """A ward from its name, alias, slug, a 4-digit postcode (with or without letters) or one of its
    streets, in any case and with or without accents; None when unknown or when it fits several wards."""
    if not text:
        return None
    folded = " ".join(fold(text).replace(",", " ").split()).strip(" .!?:-")
    folded = _WARD_PREFIX.sub("", folded)
    for ward in config.wards:
        names = {_dashless(name) for name in _names(ward)}
        if folded in names or _dashless(folded) in names:
            return ward
    postcode = _POSTCODE.search(folded)
    if postcode is not None:
        for ward in config.wards:
            if postcode.group(1) in ward.postcodes:
                return ward
    # "voor de wijk Maaspoort graag", "Marathonloop 12": a name or street inside a longer text.
    spaced = f" {_dashless(folded)} "
    found = {ward.slug: ward for ward in config.wards
             for name in (*_names(ward), *(fold(street) for street in ward.streets))
             if len(name) >= 3 and f" {_dashless(name)} " in spaced}
    return next(iter(found.values())) if len(found) == 1 else None


def _names(ward: WardConfig) -> list[str]:
    return [fold(ward.slug), fold(ward.name), *(fold(alias) for alias in ward.aliases)]


def _dashless(text: str) -> str:
    return " ".join(re.sub(r"[-'.,;:!?()]", " ", text).split())


def postcode_in(text: str | None) -> str | None:
    """The postcode as written ("5221 AB" -> "5221AB"), for the member row."""
    match = _POSTCODE.search(fold(text or ""))
    return match.group(0).replace(" ", "").upper() if match else None


# ---------------------------------------------------------------- subscribe and confirm


def subscribe(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str,
              line: CommandLine, now: datetime) -> None:
    member = member_by_email(session, sender)
    language = _language(rt.config, line, member)
    ward = resolve_ward(rt.config, line.argument)
    if ward is None:
        audit.record(session, at=now, actor=sender, action="subscribe_unknown_ward", message_id=message.id,
                     argument=line.argument)
        _answer(rt, session, mail, sender, "member_unknown_ward", language, now,
                argument=line.argument or "", wards=_ward_list(rt.config), example_postcode=_example_postcode(rt.config))
        return
    if member is not None and member.status == "active" and member.ward == ward.slug:
        audit.record(session, at=now, actor=sender, action="subscribe_already_member", message_id=message.id,
                     ward=ward.slug)
        _answer(rt, session, mail, sender, "member_already", language, now, ward_name=ward.name)
        return
    limit = rt.config.limits.confirmations_per_day
    if confirmations_since(session, sender, now - timedelta(days=1)) >= limit:
        audit.record(session, at=now, actor=sender, action="subscribe_rate_limited", message_id=message.id,
                     ward=ward.slug, limit=limit)
        log.warning("subscription for an address refused: %d confirmations in a day already", limit)
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


def confirm(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str,
            token: str | None, now: datetime) -> None:
    row = confirmation_by_token_hash(session, token_hash(token)) if token and looks_like_token(token) else None
    problem = _confirmation_problem(row, sender, now)
    if problem is not None or row is None:
        problem = problem or "unknown"
        audit.record(session, at=now, actor=sender, action="confirm_refused", message_id=message.id, reason=problem)
        language = row.language if row is not None else _language(rt.config, read_command(mail), None)
        _answer(rt, session, mail, sender, "member_confirm_failed", language, now, reason=problem)
        return
    if not use_confirmation(session, row.id, now):  # a second reply, processed at the same moment
        audit.record(session, at=now, actor=sender, action="confirm_refused", message_id=message.id, reason="used")
        return
    existing = member_by_email(session, sender)
    previous = existing.ward if existing is not None and existing.status == "active" else None
    member, created = upsert_member(session, email=sender, ward=row.ward, now=now, postcode=row.postcode,
                                    language=row.language, unsubscribe_token=new_token())
    audit.record(session, at=now, actor=sender, action="member_joined" if created or previous is None
                 else "member_moved", message_id=message.id, ward=row.ward, previous_ward=previous)
    _answer(rt, session, mail, sender, "member_welcome", member.language, now,
            **_member_context(rt.config, member, member.language))


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
                line: CommandLine, now: datetime) -> None:
    member = member_by_email(session, sender)
    if member is None or member.status == "left":
        audit.record(session, at=now, actor=sender, action="unsubscribe_not_member", message_id=message.id)
        _answer(rt, session, mail, sender, "member_not_member", _language(rt.config, line, member), now)
        return
    _leave(rt, session, message, mail, member, "email", now)


def unsubscribe_by_token(rt: Runtime, session: Session, message: Message, mail: ParsedMail, token: str,
                         now: datetime) -> None:
    """List-Unsubscribe: the personal token is the proof, whoever's address the mail came from."""
    member = member_by_unsubscribe_token(session, token) if looks_like_token(token) else None
    if member is None or member.status == "left":
        # A stale or forged link: nothing to do, and no answer (the member may have left already).
        audit.record(session, at=now, actor=_sender(message, mail) or "unknown", action="unsubscribe_link_unused",
                     message_id=message.id, reason="unknown token" if member is None else "already left")
        return
    _leave(rt, session, message, mail, member, "list-unsubscribe", now)


def _leave(rt: Runtime, session: Session, message: Message, mail: ParsedMail, member: Member, how: str,
           now: datetime) -> None:
    ward = rt.config.ward(member.ward)
    member.status, member.left_at = "left", now
    audit.record(session, at=now, actor=member.email, action="member_left", message_id=message.id,
                 ward=member.ward, via=how)
    if _is_person(rt.config, mail, member.email):
        _answer(rt, session, mail, member.email, "member_goodbye", member.language, now,
                ward_name=ward.name if ward else member.ward)


# ---------------------------------------------------------------- help and preferences


def send_help(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str,
              line: CommandLine, now: datetime) -> None:
    member = member_by_email(session, sender)
    active = member if member is not None and member.status == "active" else None
    language = _language(rt.config, line, active)
    context = _member_context(rt.config, active, language) if active else {"ward_name": None, "settings": []}
    audit.record(session, at=now, actor=sender, action="member_help", message_id=message.id)
    _answer(rt, session, mail, sender, "member_help", language, now, wards=_ward_list(rt.config),
            categories=_category_names(language), **context)


def set_preferences(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str,
                    line: CommandLine, now: datetime) -> None:
    member = member_by_email(session, sender)
    if member is None or member.status != "active":
        audit.record(session, at=now, actor=sender, action="preferences_not_member", message_id=message.id)
        _answer(rt, session, mail, sender, "member_not_member", _language(rt.config, line, None), now)
        return
    language = _language(rt.config, line, member)
    changed = apply_preferences(member.preferences or {}, line)
    if isinstance(changed, list):
        audit.record(session, at=now, actor=sender, action="preferences_not_understood", message_id=message.id,
                     unknown=changed)
        _answer(rt, session, mail, sender, "member_preferences", language, now, unknown=changed,
                categories=_category_names(language), **_member_context(rt.config, member, language))
        return
    member.preferences = changed
    audit.record(session, at=now, actor=sender, action="preferences_changed", message_id=message.id,
                 preferences=changed)
    _answer(rt, session, mail, sender, "member_preferences", language, now, unknown=[],
            categories=_category_names(language), **_member_context(rt.config, member, language))


def apply_preferences(current: dict[str, Any], line: CommandLine) -> dict[str, Any] | list[str]:
    """The new preferences after one command, or the category names that were not understood."""
    word = line.word or ""
    updated = dict(current)
    if word in ("alles", "all"):
        return {"urgent_only": False, "categories": [], "digest": False}
    # Urgent-only and the daily digest are two ways of receiving: the latest command wins.
    if word in ("alleen spoed", "urgent only"):
        updated["urgent_only"], updated["digest"] = True, False
    elif word in ("dagelijks", "daily"):
        updated["digest"], updated["urgent_only"] = True, False
    elif word in ("categorieen", "categories"):
        categories, unknown = parse_categories(line.argument or "")
        if unknown or not categories:
            return unknown or [""]
        updated["categories"] = categories
    updated.setdefault("urgent_only", False)
    updated.setdefault("categories", [])
    updated.setdefault("digest", False)
    return updated


def parse_categories(text: str) -> tuple[list[str], list[str]]:
    """("inbraak, vermissing en brand") -> (["burglary", "fire", "missing_person"], unknown names)."""
    found: set[str] = set()
    unknown: list[str] = []
    for part in re.split(r",|;|/|\ben\b|\band\b|\+|&", fold(text)):
        name = " ".join(part.split()).strip(" .!?:-")
        if not name:
            continue
        category = CATEGORY_WORDS.get(name) or CATEGORY_WORDS.get(name.replace(" ", "_"))
        if category is None:
            unknown.append(name)
        else:
            found.add(category)
    return sorted(found), unknown


def describe_preferences(preferences: dict[str, Any], language: str) -> list[str]:
    """The member's settings as short lines for an answer."""
    english = language == "en"
    lines = []
    if preferences.get("urgent_only"):
        lines.append("Only urgent alerts" if english else "Alleen spoedberichten")
    categories = preferences.get("categories") or []
    if categories:
        names = ", ".join(CATEGORY_LABELS.get(c, (c, c))[1 if english else 0] for c in categories)
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
    if count and _answers_since(session, recipient, now - timedelta(days=1)) >= ANSWERS_PER_DAY:
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


def _answers_since(session: Session, recipient: str, since: datetime) -> int:
    query = select(func.count()).select_from(Delivery).where(
        Delivery.recipient == recipient.lower(), Delivery.purpose.like("member\\_%", escape="\\"),
        Delivery.purpose != "member_confirm", Delivery.created_at >= since)
    return int(session.scalar(query) or 0)


def _member_context(config: Config, member: Member, language: str) -> dict[str, Any]:
    ward = config.ward(member.ward)
    return {"ward_name": ward.name if ward else member.ward,
            "settings": describe_preferences(member.preferences or {}, language)}


def _ward_list(config: Config) -> list[dict[str, Any]]:
    return [{"name": ward.name, "postcodes": ", ".join(ward.postcodes)} for ward in config.wards]


def _example_postcode(config: Config) -> str | None:
    return next((f"{ward.postcodes[0]} AB" for ward in config.wards if ward.postcodes), None)


def _category_names(language: str) -> str:
    return ", ".join(labels[1 if language == "en" else 0] for labels in CATEGORY_LABELS.values())


def _language(config: Config, line: CommandLine, member: Member | None) -> str:
    """The language the command was written in; else the member's; else the network's."""
    if line.language in ("nl", "en"):
        return line.language
    if member is not None and member.language in ("nl", "en"):
        return member.language
    return config.network.language


def _sender(message: Message, mail: ParsedMail) -> str:
    if message.from_address:
        return message.from_address.strip().lower()
    return mail.from_addresses[0][1].strip().lower() if mail.from_addresses else ""


def _is_person(config: Config, mail: ParsedMail, address: str) -> bool:
    """May we answer this address? Not an automatic message, not ourselves, a real address."""
    if "@" not in address:
        return False
    local, _, domain = config.network.address.lower().partition("@")
    their_local, _, their_domain = address.lower().partition("@")
    if their_domain == domain and (their_local == local or their_local.startswith(local + "+")):
        return False
    return auto_reply_reason(mail) is None and loop_reason(mail, config.network.address) is None
