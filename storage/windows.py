"""Per-sender message counts per hour window, for flood limiting."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.models import SenderWindow


def count_message(session: Session, sender: str, window_start: datetime) -> int:
    """Add one message to the sender's window and return the new count.

    One atomic upsert, so two processes counting the same sender never lose
    a count.
    """
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    upsert = (
        insert(SenderWindow)
        .values(sender=sender, window_start=window_start, count=1)
        .on_conflict_do_update(
            index_elements=[SenderWindow.sender, SenderWindow.window_start],
            set_={"count": SenderWindow.count + 1},
        )
        .returning(SenderWindow.count)
    )
    return int(session.execute(upsert).scalar_one())


def window(session: Session, sender: str, window_start: datetime) -> SenderWindow | None:
    query = select(SenderWindow).where(
        SenderWindow.sender == sender, SenderWindow.window_start == window_start
    )
    return session.scalars(query).first()
