"""Repository functions for members. They never commit: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Text, cast, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from storage.db import rowcount
from storage.models import (
    AuditEvent,
    Confirmation,
    Delivery,
    DeliveryStatus,
    Member,
    MemberStatus,
    Message,
)


def member_ward_map(session: Session) -> dict[str, str]:
    """Lower-case address -> ward slug, for every active member."""
    rows = session.execute(select(Member.email, Member.ward).where(Member.status == MemberStatus.ACTIVE))
    return {email.lower(): ward for email, ward in rows}


def active_members(session: Session) -> list[Member]:
    query = select(Member).where(Member.status == MemberStatus.ACTIVE).order_by(Member.id)
    return list(session.scalars(query))


def active_members_of_wards(session: Session, wards: Iterable[str], batch: int = 5000) -> Iterator[list[Row[Any]]]:
    """Active members of the given wards (id, email, preferences), in batches by id: a ward of
    100,000 is never in memory at once."""
    slugs = sorted(set(wards))
    after = 0
    while slugs:
        query = (select(Member.id, Member.email, Member.preferences)
                 .where(Member.status == MemberStatus.ACTIVE, Member.ward.in_(slugs), Member.id > after)
                 .order_by(Member.id).limit(batch))
        rows = list(session.execute(query))
        if not rows:
            return
        yield rows
        after = rows[-1].id


def members_by_email(session: Session, emails: Iterable[str]) -> dict[str, Member]:
    """The members among these (lower-case) addresses, by address."""
    wanted = sorted(set(emails))
    if not wanted:
        return {}
    return {m.email: m for m in session.scalars(select(Member).where(Member.email.in_(wanted)))}


def insert_members(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert new member rows in one statement; returns how many."""
    if rows:
        session.execute(insert(Member), rows)
    return len(rows)


def member_rows(connection: Connection | Session, ids: Iterable[int]) -> dict[int, Any]:
    """Plain rows (id, email, ward, language, unsubscribe_token, status) by id, for the send path."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = select(Member.id, Member.email, Member.ward, Member.language, Member.unsubscribe_token,
                   Member.status).where(Member.id.in_(wanted))
    return {row.id: row for row in connection.execute(query).all()}


def member_by_email(session: Session, email: str) -> Member | None:
    return session.scalars(select(Member).where(Member.email == email.strip().lower())).first()


# ---------------------------------------------------------------- changes


def normalise_email(email: str) -> str:
    return email.strip().lower()


def upsert_member(
    session: Session,
    *,
    email: str,
    ward: str,
    now: datetime,
    name: str | None = None,
    postcode: str | None = None,
    language: str | None = None,
    unsubscribe_token: str,
) -> tuple[Member, bool]:
    """Add a member or update one: (member, created). A left or disabled member becomes active again.

    ``unsubscribe_token`` is used only for a new member; an existing member keeps
    theirs, so the List-Unsubscribe links in alerts they already have keep working.
    """
    member = member_by_email(session, email)
    if member is None:
        member = Member(
            email=normalise_email(email), name=name, ward=ward, postcode=postcode, language=language or "nl",
            status=MemberStatus.ACTIVE, bounce_score=0, unsubscribe_token=unsubscribe_token, preferences={}, joined_at=now,
        )
        session.add(member)
        return member, True
    if member.status != "active":
        member.status, member.joined_at, member.left_at, member.disabled_at = MemberStatus.ACTIVE, now, None, None
        member.bounce_score, member.last_bounce_at = 0, None
    member.ward = ward
    if name is not None:
        member.name = name
    if postcode is not None:
        member.postcode = postcode
    if language is not None:
        member.language = language
    return member, False


def list_members(session: Session, ward: str | None = None, include_left: bool = False) -> list[Member]:
    """Members by ward and address; by default only those still in the network (active or disabled)."""
    query = select(Member).order_by(Member.ward, Member.email)
    if ward is not None:
        query = query.where(Member.ward == ward)
    if not include_left:
        query = query.where(Member.status != MemberStatus.LEFT)
    return list(session.scalars(query))


def remove_member(session: Session, email: str, now: datetime) -> Member | None:
    """Mark a member as left (the row stays for the audit trail); None when there is no such member."""
    member = member_by_email(session, email)
    if member is None or member.status == "left":
        return None
    member.status, member.left_at = MemberStatus.LEFT, now
    return member


def member_by_unsubscribe_token(session: Session, token: str) -> Member | None:
    return session.scalars(select(Member).where(Member.unsubscribe_token == token.strip().lower())).first()


# ---------------------------------------------------------------- confirmations


def add_confirmation(
    session: Session, *, email: str, ward: str, postcode: str | None, language: str, token_hash: str,
    now: datetime, expires_at: datetime, action: str = "subscribe", payload: dict[str, Any] | None = None,
) -> Confirmation:
    row = Confirmation(email=normalise_email(email), ward=ward, postcode=postcode, language=language,
                       action=action, payload=payload or {}, token_hash=token_hash, created_at=now,
                       expires_at=expires_at)
    session.add(row)
    return row


def confirmations_since(session: Session, email: str, since: datetime) -> int:
    query = select(func.count()).select_from(Confirmation).where(
        Confirmation.email == normalise_email(email), Confirmation.created_at >= since)
    return int(session.scalar(query) or 0)


def use_confirmation(session: Session, confirmation_id: int, now: datetime) -> bool:
    """Mark a confirmation used, once: False when another transaction used it first."""
    result = session.execute(
        update(Confirmation).where(Confirmation.id == confirmation_id, Confirmation.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False))
    return rowcount(result) == 1


def confirmation_by_token_hash(session: Session, digest: str) -> Confirmation | None:
    return session.scalars(select(Confirmation).where(Confirmation.token_hash == digest)).first()


# ---------------------------------------------------------------- preferences


def wants_now(member: Member, category: str | None, urgency: str) -> bool:
    """Should this alert go to the member at once? Urgent alerts always do."""
    if urgency == "urgent":
        return True
    preferences = member.preferences or {}
    if preferences.get("urgent_only") or preferences.get("digest"):
        return False
    return _category_allowed(preferences, category)


def wants_digest(member: Member, urgency: str, category: str | None = None) -> bool:
    """Does a non-urgent alert belong in the member's daily digest (DAGELIJKS / DAILY)?"""
    preferences = member.preferences or {}
    if urgency == "urgent" or not preferences.get("digest") or preferences.get("urgent_only"):
        return False
    return _category_allowed(preferences, category)


def _category_allowed(preferences: dict[str, Any], category: str | None) -> bool:
    categories = preferences.get("categories")
    return not categories or (category or "other") in categories


# ---------------------------------------------------------------- export and erase (AVG/GDPR)


def export_member(session: Session, email: str) -> dict[str, Any] | None:
    """Everything binrelay keeps about one address, as JSON-ready data; None when nothing is kept."""
    address = normalise_email(email)
    member = member_by_email(session, address)
    confirmations = list(session.scalars(
        select(Confirmation).where(Confirmation.email == address).order_by(Confirmation.id)))
    deliveries = list(session.scalars(select(Delivery).where(Delivery.recipient == address).order_by(Delivery.id)))
    events = _events_naming(session, address)
    if member is None and not confirmations and not deliveries and not events:
        return None
    return {
        "email": address,
        "member": _member_data(member) if member is not None else None,
        "confirmations": [
            {"ward": c.ward, "postcode": c.postcode, "language": c.language, "created_at": _iso(c.created_at),
             "expires_at": _iso(c.expires_at), "used_at": _iso(c.used_at)} for c in confirmations
        ],
        "deliveries": [
            {"id": d.id, "alert_id": d.alert_id, "purpose": d.purpose, "status": d.status,
             "created_at": _iso(d.created_at), "sent_at": _iso(d.sent_at)} for d in deliveries
        ],
        "audit_events": [
            {"id": e.id, "at": _iso(e.at), "actor": e.actor, "action": e.action, "detail": e.detail} for e in events
        ],
    }


@dataclass
class Erased:
    members: int = 0
    confirmations: int = 0
    deliveries: int = 0
    messages: int = 0


def erase_member(session: Session, email: str, placeholder: str, now: datetime) -> Erased:
    """The address's own rows: the member and confirmations go, mail still waiting for it is dropped, sent
    mail keeps its row (the counts stay right) without the address or the bytes, and the messages it sent
    keep their row and classification (statistics) but lose their bytes, text, subject and sender.

    Every other mention of the address (in texts, other messages, the audit trail) is the caller's: see
    ``storage.privacy.replace_everywhere`` and ``relay.members.erasure``.
    """
    address = normalise_email(email)
    erased = Erased()
    member = member_by_email(session, address)
    if member is not None:
        session.delete(member)
        erased.members = 1
    erased.confirmations = rowcount(session.execute(
        delete(Confirmation).where(Confirmation.email == address).execution_options(synchronize_session=False)))
    deliveries = list(session.scalars(select(Delivery).where(func.lower(Delivery.recipient) == address)))
    for row in deliveries:
        if row.status == DeliveryStatus.PENDING:
            session.delete(row)
        else:
            row.recipient, row.raw, row.last_error = f"{placeholder}-{row.id}", None, None
    erased.deliveries = len(deliveries)
    erased.messages = rowcount(session.execute(
        update(Message).where(func.lower(Message.from_address) == address)
        .values(from_address=placeholder, raw=None, body_text=None, subject=None, message_id=None, error=None,
                facts=None, signature=None, purged_at=now)
        .execution_options(synchronize_session=False)))
    session.flush()
    return erased


def _events_naming(session: Session, address: str) -> list[AuditEvent]:
    pattern = "%" + address.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    query = select(AuditEvent).where(or_(
        func.lower(AuditEvent.actor) == address,
        func.lower(cast(AuditEvent.detail, Text)).like(pattern, escape="\\"),
    )).order_by(AuditEvent.id)
    return list(session.scalars(query))




def _member_data(member: Member) -> dict[str, Any]:
    return {
        "email": member.email, "name": member.name, "ward": member.ward, "postcode": member.postcode,
        "language": member.language, "status": member.status, "bounce_score": member.bounce_score,
        "preferences": member.preferences or {}, "joined_at": _iso(member.joined_at),
        "left_at": _iso(member.left_at), "disabled_at": _iso(member.disabled_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
