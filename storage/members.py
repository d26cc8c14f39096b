"""Repository functions for members. They never commit: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.models import Member


def member_ward_map(session: Session) -> dict[str, str]:
    """Lower-case address -> ward slug, for every active member."""
    rows = session.execute(select(Member.email, Member.ward).where(Member.status == "active"))
    return {email.lower(): ward for email, ward in rows}


def active_members_of_wards(session: Session, wards: Iterable[str]) -> list[Member]:
    """Active members of the given wards, in a stable order (by id)."""
    slugs = sorted(set(wards))
    if not slugs:
        return []
    query = select(Member).where(Member.status == "active", Member.ward.in_(slugs)).order_by(Member.id)
    return list(session.scalars(query))


def member_by_email(session: Session, email: str) -> Member | None:
    return session.scalars(select(Member).where(Member.email == email.strip().lower())).first()
