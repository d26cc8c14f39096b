"""Every rate limit, one mechanism: events counted per (limit, key) in fixed windows.

The flood limit (messages per sender per hour), answers to one address per
day, subscription confirmations per address per day and network-wide per
hour, refusal answers per address per day: each is a ``bucket``. A count is
one atomic upsert, so two processes counting the same key never lose one.
Keys are digests of addresses (``address_key``), so the table holds no
address; ``forget`` drops an erased address's windows all the same.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.db import rowcount
from storage.models import RateWindow

NETWORK_KEY = "*"
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def address_key(address: str) -> str:
    """The key of an address: a digest, so no address is stored with the counts."""
    return hashlib.sha256(b"binrelay-rate:" + address.strip().lower().encode("utf-8", "replace")).hexdigest()


def window_start(now: datetime, length: timedelta) -> datetime:
    """The start of the fixed window of ``length`` (an hour or a day, UTC) that ``now`` falls in."""
    if length >= DAY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    return now.replace(minute=0, second=0, microsecond=0)


def count(session: Session, bucket: str, key: str, start: datetime) -> int:
    """Add one event to the window and return the new count (one atomic upsert)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    upsert = (
        insert(RateWindow)
        .values(bucket=bucket, key=key, window_start=start, count=1)
        .on_conflict_do_update(
            index_elements=[RateWindow.bucket, RateWindow.key, RateWindow.window_start],
            set_={"count": RateWindow.count + 1},
        )
        .returning(RateWindow.count)
    )
    return int(session.execute(upsert).scalar_one())


def counted(session: Session, bucket: str, key: str, start: datetime) -> int:
    """The window's count so far, without adding to it."""
    row = window(session, bucket, key, start)
    return row.count if row is not None else 0


def window(session: Session, bucket: str, key: str, start: datetime) -> RateWindow | None:
    query = select(RateWindow).where(
        RateWindow.bucket == bucket, RateWindow.key == key, RateWindow.window_start == start
    )
    return session.scalars(query).first()


def forget(session: Session, address: str) -> int:
    """Drop every window of ``address`` (erasure); returns how many."""
    result = session.execute(
        delete(RateWindow).where(RateWindow.key == address_key(address)).execution_options(synchronize_session=False)
    )
    return rowcount(result)


def purge_before(session: Session, cutoff: datetime) -> int:
    """Drop windows that ended long ago (retention)."""
    result = session.execute(
        delete(RateWindow).where(RateWindow.window_start < cutoff).execution_options(synchronize_session=False)
    )
    return rowcount(result)
