"""A coordinator's reply to an approval request: authorise, read, decide, answer.

Anything that is not a valid decision changes nothing. A refusal is recorded
in the audit trail and answered once, never to an automatic message or to our
own address, and at most a few times a day to the same address, so a forger
or a misconfigured responder cannot turn binrelay into a mail cannon.

A reply that only corrects the urgency or category (``SPOED``, ``CATEGORIE
fraude``) decides nothing: the correction is applied to the pending item and
the coordinator is told what was noted (``note_corrections``); the token stays
valid for the decision.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from mail.message import ParsedMail
from mail.quotes import new_text
from relay.approvals.corrections import Corrections, apply_to_pending, change_lines, unchanged_lines
from relay.approvals.decide import Decision, decide, decision_context
from relay.approvals.merging import head_of
from relay.approvals.requests import may_decide
from relay.config import Config
from relay.delivery import compose
from relay.service import texts
from relay.service.identity import identity_of
from relay.service.runtime import Runtime
from relay.service.tokens import looks_like_token, token_hash
from rules.addresses import find_tag
from rules.automatic import answer_refusal
from rules.loader import RuleSet
from rules.places import Places
from rules.replies import ReplyCommand, category_problem, parse_reply
from rules.sender import Assurance, SenderIdentity
from storage import audit, limits
from storage.models import ClassificationRecord, ItemStatus, Message, QueueItem
from storage.outbox import enqueue_notice
from storage.queue import item_by_token_hash

log = logging.getLogger("binrelay.approvals")

SUBJECT_MARKER = re.compile(r"\[BIN-([A-Za-z2-7]{16})\]")
REFUSAL_ANSWERS_PER_DAY = 3
REFUSAL_ANSWERS = "refusal_answers"
PARTNER_WORDS = {"police": "police", "politie": "police", "municipality": "municipality", "gemeente": "municipality"}


def handle_reply(rt: Runtime, session: Session, message: Message, mail: ParsedMail, cls: ClassificationRecord) -> None:
    """Handle a reply to an approval request (command ``decision``)."""
    now = rt.clock.now()
    identity = identity_of(message)
    sender = identity.address or ""
    token = reply_token(mail, cls, rt.config.network.address)
    item = head_of(session, item_by_token_hash(session, token_hash(token)) if token else None)
    refusal = refusal_reason(rt.config, identity, item, now)
    if refusal == "used" and item is not None and may_decide(rt.config, sender, item):
        answer_already_decided(rt, session, message, mail, sender, item, now)
        return
    if refusal is not None or item is None:
        refuse(rt, session, message, mail, sender, item, refusal or "unknown_token", now)
        return
    decision = read_decision(rt.config, rt.classifier.places, mail, rt.classifier.rules)
    if isinstance(decision, list):
        ask_again(rt, session, message, mail, sender, item, token or "", decision, now)
        return
    if isinstance(decision, Corrections):
        note_corrections(rt, session, message, mail, sender, item, token or "", decision, now)
        return
    won = decide(rt, session, item, decision, actor=sender, now=now, message_id=message.id, confirm_to=sender)
    if not won:  # another coordinator's decision landed between our read and our UPDATE
        session.refresh(item)
        answer_already_decided(rt, session, message, mail, sender, item, now)


# ---------------------------------------------------------------- the token


def reply_token(mail: ParsedMail, cls: ClassificationRecord, network_address: str) -> str | None:
    """The token from the classification, the ``bin+<token>@`` address, or the ``[BIN-<token>]`` marker."""
    found = getattr(cls, "token", None)
    if found and looks_like_token(found):
        return str(found).lower()
    tag = find_tag(mail, network_address)
    if tag is not None and tag.kind == "approval" and looks_like_token(tag.token):
        return tag.token.lower()
    match = SUBJECT_MARKER.search(mail.subject or "")  # the address held another flow's tag
    return match.group(1).lower() if match else None


# ---------------------------------------------------------------- authorisation


def refusal_reason(config: Config, identity: SenderIdentity, item: QueueItem | None, now: datetime) -> str | None:
    """Why this reply may not decide ``item``, or None when it may.

    The one sender identity decides who answered: a failed verdict is never a
    coordinator, and no single From address is nobody.
    """
    if item is None:
        return "unknown_token"
    if identity.assurance == Assurance.FAILED:
        return "auth_failed"
    if not identity.address or not may_decide(config, identity.address, item):
        return "not_coordinator"
    if item.status == ItemStatus.EXPIRED or (item.status == ItemStatus.PENDING and item.expires_at <= now):
        return "expired"
    if item.status != ItemStatus.PENDING or item.token_used_at is not None:
        return "used"
    return None


# ---------------------------------------------------------------- reading the command


def read_decision(config: Config, places: Places, mail: ParsedMail,
                  rules: RuleSet) -> Decision | Corrections | list[str]:
    """The decision in a reply, the corrections alone (no decision), or the problems that keep us from acting."""
    command = parse_reply(new_text(mail.text or ""))
    language = texts.language_of(config)
    problems = [str(problem) for problem in command.problems]
    corrections = _corrections(command, rules, language, problems)
    target: list[str] | None = None
    if command.wards:
        slugs, unknown = places.resolve_names(command.wards)
        problems += [_unknown_ward(name, language) for name in unknown]
        target = sorted(slugs)
    partners = _partner_kinds(command.partners)
    problems += [_no_partner(kind, language) for kind in partners if not _partner_configured(config, kind)]
    if command.decision == "edit" and not (command.edited_text or "").strip():
        problems.append("WIJZIG zonder nieuwe tekst" if language == "nl" else "EDIT without new text")
    if command.decision is None and not partners and not command.corrects and not problems:
        problems.append("geen opdracht gevonden" if language == "nl" else "no command found")
    if problems:
        return problems
    if command.decision == "reject":
        if partners:
            return Decision("partner_only", reason=command.reason, partners=partners, corrections=corrections)
        return Decision("reject", reason=command.reason, corrections=corrections)
    if command.decision is None:
        if not partners:
            return corrections
        return Decision("partner_only", partners=partners, corrections=corrections)
    edited = command.edited_text.strip() if command.decision == "edit" and command.edited_text else None
    return Decision("approve", target_wards=target, partners=partners, edited_text=edited, corrections=corrections)


def _corrections(command: ReplyCommand, rules: RuleSet, language: str, problems: list[str]) -> Corrections:
    """The SPOED / CATEGORIE lines as values; an unknown category name adds a problem naming the known ones."""
    category = None
    if command.category is not None:
        category = rules.category_named(command.category)
        problem = category_problem(rules, command.category, language)
        if problem is not None:
            problems.append(problem)
    return Corrections(urgency=command.urgency, category=category)


def _partner_kinds(values: Any) -> list[str]:
    kinds = [PARTNER_WORDS.get(str(value).strip().lower(), str(value).strip().lower()) for value in values or []]
    return sorted(set(kinds))


def _partner_configured(config: Config, kind: str) -> bool:
    partner = config.partner(kind)
    return partner is not None and (partner.forward_to is not None or bool(partner.ward_forward_to))


def _unknown_ward(name: str, language: str) -> str:
    return f"onbekende wijk: {name}" if language == "nl" else f"unknown ward: {name}"


def _no_partner(kind: str, language: str) -> str:
    label = texts.PARTNER_LABELS[language].get(kind, kind)
    return f"geen adres ingesteld voor {label}" if language == "nl" else f"no address configured for {label}"


# ---------------------------------------------------------------- answers


def _may_answer(config: Config, mail: ParsedMail, sender: str) -> bool:
    """Never answer an automatic message, ourselves, or an address that is not one."""
    return answer_refusal(mail, sender, config.network.address) is None


def refuse(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str,
           item: QueueItem | None, reason: str, now: datetime) -> None:
    """Record a refusal and answer it, once and within the daily limit per address."""
    actor = sender or "unknown"
    answered = _may_answer(rt.config, mail, sender) and _under_refusal_limit(session, actor, now)
    audit.record(
        session, at=now, actor=actor, action="reply_refused", queue_item_id=item.id if item else None,
        message_id=message.id, reason=reason, answered=answered,
    )
    log.warning("message %s: refused (%s)%s", message.id, reason, "" if answered else "; not answered")
    if not answered:
        return
    _answer(rt, session, "answer_refused", sender, mail, now, reason=reason)


def _under_refusal_limit(session: Session, actor: str, now: datetime) -> bool:
    day = limits.window_start(now, limits.DAY)
    return limits.count(session, REFUSAL_ANSWERS, limits.address_key(actor), day) <= REFUSAL_ANSWERS_PER_DAY


def answer_already_decided(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str,
                           item: QueueItem, now: datetime) -> None:
    audit.record(session, at=now, actor=sender, action="reply_too_late", queue_item_id=item.id,
                 message_id=message.id, decided_by=item.decided_by)
    if _may_answer(rt.config, mail, sender):
        context = decision_context(rt.config, item, texts.language_of(rt.config))
        _answer(rt, session, "answer_already_decided", sender, mail, now, **context)


def ask_again(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str, item: QueueItem,
              token: str, problems: list[str], now: datetime) -> None:
    """Nothing changes; the coordinator is told what was unclear and can answer again."""
    audit.record(session, at=now, actor=sender, action="reply_not_understood", queue_item_id=item.id,
                 message_id=message.id, problems=problems)
    if not _may_answer(rt.config, mail, sender):
        return
    language = texts.language_of(rt.config)
    wards = ", ".join(ward.name for ward in rt.config.wards)
    _answer(rt, session, "answer_problem", sender, mail, now, token=token, problems=problems, wards=wards,
            reply_to=compose.plus_address(rt.config.network.address, token), language=language)


def note_corrections(rt: Runtime, session: Session, message: Message, mail: ParsedMail, sender: str,
                     item: QueueItem, token: str, corrections: Corrections, now: datetime) -> None:
    """A correction without a decision: applied to the pending item, answered with what was noted."""
    changes = apply_to_pending(rt.config, session, item, corrections, actor=sender, now=now, message_id=message.id)
    if changes is None:  # a decision landed between our read and our UPDATE
        session.refresh(item)
        answer_already_decided(rt, session, message, mail, sender, item, now)
        return
    audit.record(session, at=now, actor=sender, action="reply_corrections_noted", queue_item_id=item.id,
                 message_id=message.id, changed=[change.field.value for change in changes])
    if not _may_answer(rt.config, mail, sender):
        return
    language = texts.language_of(rt.config)
    rules = rt.classifier.rules
    _answer(rt, session, "answer_corrected", sender, mail, now, token=token,
            changes=change_lines(rules, changes, language),
            unchanged=unchanged_lines(rules, item, corrections, changes, language),
            reply_to=compose.plus_address(rt.config.network.address, token), language=language)


def _answer(rt: Runtime, session: Session, template: str, recipient: str, mail: ParsedMail, now: datetime,
            reply_to: str | None = None, language: str | None = None, **context: Any) -> None:
    context.setdefault("original_subject", compose.header_safe(mail.subject or ""))
    rendered = rt.templates.render(template, language or texts.language_of(rt.config), **context)
    raw = compose.notice(
        rt.config, to=recipient, subject=rendered.subject, body=rendered.body, now=now, reply_to=reply_to,
        in_reply_to=mail.message_id, references=mail.references[-10:], auto_submitted="auto-replied",
    )
    enqueue_notice(session, recipient=recipient, raw=raw, purpose=template, now=now)
