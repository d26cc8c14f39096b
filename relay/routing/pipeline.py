"""Route stored messages: one transaction per message.

Ingest only stores raw bytes. Here each ``new`` message is parsed from its
raw bytes, classified by the rules, and handed to the use case its kind calls
for, all in one transaction. An exception rolls back that message's routing,
marks it ``failed`` (the coordinators see it in ``binrelay queue``) and the
loop goes on with the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from threading import Event

from sqlalchemy.orm import Session

from mail.facts import MailFacts
from mail.message import ParsedMail, parse_mail
from relay.approvals.answers import handle_reply
from relay.approvals.requests import hold
from relay.delivery.bounces import handle_bounce
from relay.members.commands import handle_command
from relay.routing.flood import over_limit
from relay.routing.followups import handle_resolved
from relay.service.runtime import Runtime
from rules import Classification, MemberLookup
from storage.db import decisions_in_turn
from storage.members import member_ward_map
from storage.messages import fail_if_new, pending_message_ids, take_new_message
from storage.models import ClassificationRecord, Message, MessageStatus

log = logging.getLogger("binrelay.pipeline")

Handler = Callable[[Runtime, Session, Message, ParsedMail, ClassificationRecord], object]
# Messages routed per read of the member table.
ROUTE_BATCH = 500
MEMBER_COMMANDS = frozenset({"subscribe", "unsubscribe", "help", "confirm", "preferences"})


@dataclass
class RouteStats:
    routed: int = 0
    dropped: int = 0
    failed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def tried(self) -> int:
        return self.routed + self.failed


def choose_handler(cls: ClassificationRecord, command: str | None) -> tuple[MessageStatus, Handler | None]:
    """Decide what a classified message calls for: (status, handler)."""
    if cls.kind == "loop":
        return MessageStatus.DROPPED, None
    if cls.kind == "auto_reply":
        return MessageStatus.DROPPED, None
    if cls.kind == "bounce":
        return MessageStatus.PROCESSED, handle_bounce
    if cls.kind == "command":
        if command == "decision":
            return MessageStatus.PROCESSED, handle_reply
        if command == "resolved":
            return MessageStatus.PROCESSED, handle_resolved
        if command in MEMBER_COMMANDS:
            return MessageStatus.PROCESSED, handle_command
        return MessageStatus.HELD, hold  # a command we cannot place: a coordinator looks
    return MessageStatus.HELD, hold


def route_message(
    rt: Runtime, session: Session, message: Message, members: MemberLookup | None = None
) -> str:
    """Classify and route one stored message inside the caller's transaction; returns its status."""
    mail = parse_mail(message.raw or b"", rt.config.limits.max_message_bytes)
    cls = message.classification or classify_message(rt, session, message, mail, members)
    decisions_in_turn(session)
    if over_limit(rt, session, message, cls):
        status, handler = MessageStatus.HELD, None  # kept, and counted in the sender's one summary
    else:
        status, handler = choose_handler(cls, cls.command)
    if handler is not None:
        handler(rt, session, message, mail, cls)
    message.status = status
    message.processed_at = rt.clock.now()
    log.info(
        "message %s routed: kind=%s source=%s category=%s wards=%s status=%s",
        message.id, cls.kind, cls.source, cls.category, ",".join(cls.wards or []) or "-", status,
    )
    return status


def classify_message(
    rt: Runtime, session: Session, message: Message, mail: ParsedMail, members: MemberLookup | None
) -> ClassificationRecord:
    """Run the rules and keep their decision (with its explanation) next to the message."""
    lookup = members if members is not None else member_ward_map(session).get
    result = rt.classifier.classify(mail, lookup)
    row = classification_row(result, rt.clock.now())
    # What could not be read comes first: the request shows only the first lines.
    row.explanation = [*understanding_problems(mail, rt.config.limits.max_header_bytes), *row.explanation]
    message.classification = row
    # Parsed once: later steps read these instead of the raw bytes (relay.service.facts).
    message.body_text = mail.text
    message.subject = mail.subject
    message.facts = MailFacts.of(mail).as_json()
    # The one sender identity: what every later path acts on (ingest's quick header scan only guessed).
    message.from_address = result.sender
    session.add(row)
    session.flush()
    return row


def classification_row(result: Classification, now: datetime) -> ClassificationRecord:
    identity = result.identity
    return ClassificationRecord(
        sender_assurance=identity.assurance if identity is not None else "unauthenticated",
        sender_notes=list(identity.reasons) if identity is not None else [],
        claimed_source=result.claimed,
        source=result.source,
        kind=result.kind,
        command=result.command,
        category=result.category,
        wards=list(result.wards),
        urgency=result.urgency,
        explanation=list(result.explanation),
        partner_name=result.partner,
        created_at=now,
    )


def understanding_problems(mail: ParsedMail, max_header_bytes: int) -> list[str]:
    """Why a coordinator should look twice: the message could not be read whole."""
    problems = []
    if mail.header_bytes > max_header_bytes:
        problems.append(f"malformed: headers of {mail.header_bytes} bytes (more than {max_header_bytes}); "
                        "no sender read, held")
    if mail.too_large:
        problems.append(f"message too large ({mail.raw_size} bytes): parts were not decoded")
    if not mail.text.strip() and not mail.attachments:
        problems.append("no readable text")
    problems.extend(f"defect: {defect}" for defect in mail.defects[:5])
    return problems


def route_pending(rt: Runtime, limit: int | None = None, stop: Event | None = None,
                  batch: int = ROUTE_BATCH) -> RouteStats:
    """Route every ``new`` message (at most ``limit``), each in its own transaction.

    Batches of ``batch`` until none is left; the member table is read once per
    batch. Several processes may route at once: each message is routed by
    exactly one (``take_new_message``), the others pass it by.
    """
    stats = RouteStats()
    passed: set[int] = set()  # being routed by another process
    while limit is None or stats.tried < limit:
        size = batch if limit is None else min(batch, limit - stats.tried)
        with rt.sessions() as session:
            ids = [i for i in pending_message_ids(session, size + len(passed)) if i not in passed][:size]
            members = member_ward_map(session).get
        if not ids:
            break
        for message_id in ids:
            if stop is not None and stop.is_set():
                return stats
            if not _route_one(rt, message_id, stats, members):
                passed.add(message_id)
    return stats


def _route_one(rt: Runtime, message_id: int, stats: RouteStats, members: MemberLookup) -> bool:
    """Route one message; False when another process has it (or had it)."""
    try:
        with rt.sessions() as session, session.begin():
            message = take_new_message(session, message_id)
            if message is None:
                return False
            status = route_message(rt, session, message, members)
    except Exception as exc:
        log.exception("message %s could not be routed; held for a coordinator", message_id)
        with rt.sessions() as session, session.begin():
            # Only if still new: a process that lost a race leaves the winner's result alone.
            failed = fail_if_new(session, message_id, f"{type(exc).__name__}: {exc}")
        stats.failed += int(failed)
        return failed
    stats.routed += 1
    if status == "dropped":
        stats.dropped += 1
    stats.by_kind[status] = stats.by_kind.get(status, 0) + 1
    return True
