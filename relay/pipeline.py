"""Route stored messages: one transaction per message.

Ingest has already stored each message with its classification. Here each
``new`` message is parsed again from its raw bytes and handed to the use case
its kind calls for. An exception rolls back that message's routing, marks it
``failed`` and holds it for a coordinator; the loop goes on with the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from relay.mime import ParsedMail, parse_mail
from relay.runtime import Runtime
from storage.models import Classification, Message

log = logging.getLogger("binrelay.pipeline")

Handler = Callable[[Runtime, Session, Message, ParsedMail, Classification], None]
MEMBER_COMMANDS = frozenset({"subscribe", "unsubscribe", "help", "confirm"})


@dataclass
class RouteStats:
    routed: int = 0
    dropped: int = 0
    failed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def _hold(rt: Runtime, session: Session, message: Message, mail: ParsedMail, cls: Classification) -> None:
    from relay.approvals import hold

    hold(rt, session, message, mail, cls)


def _decision(rt: Runtime, session: Session, message: Message, mail: ParsedMail, cls: Classification) -> None:
    from relay.approvals import handle_reply

    handle_reply(rt, session, message, mail, cls)


def _member_command(rt: Runtime, session: Session, message: Message, mail: ParsedMail, cls: Classification) -> None:
    from relay.membership import handle_command

    handle_command(rt, session, message, mail, cls)


def _bounce(rt: Runtime, session: Session, message: Message, mail: ParsedMail, cls: Classification) -> None:
    from relay.delivery.bounces import handle_bounce

    handle_bounce(rt, session, message, mail, cls)


def choose_handler(cls: Classification, command: str | None) -> tuple[str, Handler | None]:
    """Decide what a classified message calls for: (status, handler)."""
    if cls.kind == "loop":
        return "dropped", None
    if cls.kind == "auto_reply":
        return "dropped", None
    if cls.kind == "bounce":
        return "processed", _bounce
    if cls.kind == "command":
        if command == "decision":
            return "processed", _decision
        if command in MEMBER_COMMANDS:
            return "processed", _member_command
        return "held", _hold  # a command we cannot place: a coordinator looks
    return "held", _hold


def route_message(rt: Runtime, session: Session, message: Message) -> str:
    """Route one stored message inside the caller's transaction; returns its status."""
    cls = message.classification
    mail = parse_mail(message.raw or b"", rt.config.limits.max_message_bytes)
    if cls is None:
        # Ingest could not classify it (stored as failed): a coordinator looks.
        cls = _classify_now(rt, session, message, mail)
    status, handler = choose_handler(cls, cls.command)
    if handler is not None:
        handler(rt, session, message, mail, cls)
    message.status = status
    message.processed_at = rt.clock.now()
    log.info(
        "message %s routed: kind=%s source=%s status=%s",
        message.id, cls.kind, cls.source, status,
    )
    return status


def _classify_now(rt: Runtime, session: Session, message: Message, mail: ParsedMail) -> Classification:
    from relay.ingest import classification_row
    from storage.members import member_ward_map

    wards = member_ward_map(session)
    result = rt.classifier.classify(mail, wards.get)
    row = classification_row(message, result, rt.clock.now())
    session.add(row)
    session.flush()
    return row


def pending_ids(session: Session, limit: int) -> list[int]:
    query = select(Message.id).where(Message.status == "new").order_by(Message.id).limit(limit)
    return list(session.scalars(query))


def route_pending(rt: Runtime, limit: int = 500) -> RouteStats:
    """Route every ``new`` message, each in its own transaction."""
    stats = RouteStats()
    with rt.sessions() as session:
        ids = pending_ids(session, limit)
    for message_id in ids:
        _route_one(rt, message_id, stats)
    return stats


def _route_one(rt: Runtime, message_id: int, stats: RouteStats) -> None:
    try:
        with rt.sessions() as session, session.begin():
            message = session.get(Message, message_id)
            if message is None or message.status != "new":
                return  # another process routed it
            status = route_message(rt, session, message)
    except Exception as exc:  # noqa: BLE001 - one bad message must not stop the loop
        log.exception("message %s could not be routed; held for a coordinator", message_id)
        _mark_failed(rt, message_id, f"{type(exc).__name__}: {exc}")
        stats.failed += 1
        return
    stats.routed += 1
    if status == "dropped":
        stats.dropped += 1
    stats.by_kind[status] = stats.by_kind.get(status, 0) + 1


def _mark_failed(rt: Runtime, message_id: int, error: str) -> None:
    with rt.sessions() as session, session.begin():
        message = session.get(Message, message_id)
        if message is not None:
            message.status = "failed"
            message.error = error[:2000]
