"""Live workers and jobs done once: what lets several binrelay processes share one database.

A worker row is written when a process starts and its ``heartbeat_at`` every
few seconds. A delivery claim (``deliveries.claimed_by``) counts only while
its worker's heartbeat is fresh, so the rows of a process that died are free
within seconds, not after the claim lease. ``claim_job`` lets exactly one
process do a periodic job for a period. These functions never commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from storage.models import JobRun, Worker

# A worker whose heartbeat is older than this is gone: its claims are free.
STALE_AFTER = timedelta(seconds=15)


def register(session: Session, worker_id: str, host: str, pid: int, now: datetime) -> None:
    session.merge(Worker(id=worker_id, host=host, pid=pid, started_at=now, heartbeat_at=now))


def heartbeat(session: Session, worker_id: str, now: datetime) -> bool:
    """Mark the worker alive; False when its row was removed (it was taken for dead)."""
    result = session.execute(update(Worker).where(Worker.id == worker_id).values(heartbeat_at=now)
                             .execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))


def unregister(session: Session, worker_id: str) -> None:
    session.execute(delete(Worker).where(Worker.id == worker_id).execution_options(synchronize_session=False))


def workers_on(session: Session, host: str) -> list[Worker]:
    return list(session.scalars(select(Worker).where(Worker.host == host)))


def live_workers(session: Session, now: datetime) -> list[Worker]:
    query = select(Worker).where(Worker.heartbeat_at > now - STALE_AFTER).order_by(Worker.started_at)
    return list(session.scalars(query))


def forget_stale(session: Session, now: datetime) -> int:
    """Remove workers whose heartbeat stopped long ago (their claims were free already)."""
    result = session.execute(delete(Worker).where(Worker.heartbeat_at < now - STALE_AFTER * 40)
                             .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


def claim_job(session: Session, job: str, period: str, worker_id: str, now: datetime) -> bool:
    """True for exactly one caller per (job, period), whatever the number of processes."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (insert(JobRun).values(job=job, period=period, worker=worker_id, ran_at=now)
                 .on_conflict_do_nothing(index_elements=[JobRun.job, JobRun.period]))
    result = session.execute(statement)
    return bool(getattr(result, "rowcount", 0))


def forget_jobs_before(session: Session, cutoff: datetime) -> int:
    """Drop the records of jobs run before ``cutoff`` (retention)."""
    result = session.execute(delete(JobRun).where(JobRun.ran_at < cutoff).execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
