"""Sending what is due in the outbox.

``deliver_pending`` claims due rows in batches, renders each alert copy just
before it is sent, sends over ``config.smtp.connections`` reused connections
concurrently (one asyncio loop, see ``relay.delivery.smtp``) and records every
outcome right after the server answered:

- accepted: marked sent (group commits by one writer, so the marks trail the
  server's "250" by one commit; only messages accepted in that window can be
  sent twice after a crash: the in-flight rule);
- temporary (4xx, lost connection, timeout): retried with exponential backoff
  (``delivery.retry_base_seconds`` doubling up to ``retry_max_seconds``), failed
  after ``delivery.max_attempts`` tries;
- permanent (5xx): failed, and a hard bounce for the member (see ``bounces``).

A ``stop`` event is checked before every message; rows not tried are released.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from relay import compose
from relay.config import Config
from relay.delivery.bounces import count_hard_bounce
from relay.delivery.render import AlertRenderer, AttachmentData
from relay.delivery.smtp import SendResult, SmtpPool
from relay.mime import leaf_parts, parse_mail
from relay.runtime import Runtime
from storage.models import Alert, Delivery, Member, QueueItem
from storage.outbox import claim_due, mark_failed, mark_retry, mark_sent, pending_count, release

log = logging.getLogger("binrelay.delivery")

# Most outcomes one writer transaction records at once.
WRITE_BATCH = 500
# Accepted-but-not-yet-recorded messages per connection: the most a crash can
# make us send twice is ``in_flight_limit(connections)``.
UNRECORDED_PER_CONNECTION = 4


def in_flight_limit(connections: int) -> int:
    """The most messages that can be accepted by the server but not yet marked sent."""
    return max(8, UNRECORDED_PER_CONNECTION * connections)


@dataclass
class DeliverStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0  # the member left or was disabled after the alert was queued


@dataclass
class _Job:
    delivery_id: int
    recipient: str
    attempts: int
    raw: bytes | None = None  # notices
    renderer: AlertRenderer | None = None  # alert copies
    member: Member | None = None


@dataclass
class _Outcome:
    job: _Job
    result: SendResult


@dataclass
class _Pass:
    """State of one ``deliver_pending`` call."""

    rt: Runtime
    stop: threading.Event | None
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    stats: DeliverStats = field(default_factory=DeliverStats)
    renderers: dict[int, AlertRenderer] = field(default_factory=dict)
    alerts_seen: set[int] = field(default_factory=set)
    unrecorded: asyncio.Semaphore | None = None  # set inside the loop
    writer_error: BaseException | None = None

    def stopped(self) -> bool:
        return self.writer_error is not None or (self.stop is not None and self.stop.is_set())

    @property
    def config(self) -> Config:
        return self.rt.config



def deliver_pending(rt: Runtime, stop: threading.Event | None = None) -> DeliverStats:
    """Send everything due now; returns what happened. Safe to run in several processes."""
    state = _Pass(rt, stop)
    asyncio.run(_run(state))
    if state.stats.sent or state.stats.retried or state.stats.failed:
        log.info("delivery: %d sent, %d to retry, %d failed, %d skipped", state.stats.sent,
                 state.stats.retried, state.stats.failed, state.stats.skipped)
    return state.stats


async def _run(state: _Pass) -> None:
    pool = SmtpPool(state.config.smtp)
    state.unrecorded = asyncio.Semaphore(in_flight_limit(pool.size))
    try:
        while not state.stopped():
            jobs = await asyncio.to_thread(_claim_batch, state)
            if not jobs:
                break
            await _send_batch(state, pool, jobs)
    finally:
        await pool.close()
    await asyncio.to_thread(_complete_alerts, state)


# ---------------------------------------------------------------- claiming


def _claim_batch(state: _Pass) -> list[_Job]:
    config, now = state.config, state.rt.clock.now()
    lease = timedelta(seconds=config.delivery.claim_lease_seconds)
    with state.rt.sessions() as session, session.begin():
        rows = claim_due(session, state.worker, now, config.delivery.batch_size, lease)
        if not rows:
            return []
        members = _members_of(session, rows)
        jobs, gone = [], []
        for row in rows:
            job = _job_for(state, session, row, members)
            if job is None:
                gone.append(row.id)
            else:
                jobs.append(job)
        for delivery_id in gone:
            mark_failed(session, delivery_id, "recipient is no longer an active member")
        state.stats.skipped += len(gone)
    return jobs


def _members_of(session: Session, rows: list[Delivery]) -> dict[int, Member]:
    """The rows' members, detached: they are read while the loop sends, after this session closed."""
    ids = {row.member_id for row in rows if row.member_id is not None}
    if not ids:
        return {}
    members = list(session.scalars(select(Member).where(Member.id.in_(ids))))
    for member in members:
        session.expunge(member)
    return {member.id: member for member in members}


def _job_for(state: _Pass, session: Session, row: Delivery, members: dict[int, Member]) -> _Job | None:
    if row.alert_id is None:
        return _Job(row.id, row.recipient, row.attempts, raw=row.raw or b"")
    member = members.get(row.member_id) if row.member_id is not None else None
    if member is None or member.status != "active":
        return None
    state.alerts_seen.add(row.alert_id)
    renderer = state.renderers.get(row.alert_id)
    if renderer is None:
        renderer = _renderer_for(state, session, row.alert_id)
        state.renderers[row.alert_id] = renderer
    return _Job(row.id, row.recipient, row.attempts, renderer=renderer, member=member)


def _renderer_for(state: _Pass, session: Session, alert_id: int) -> AlertRenderer:
    alert = session.get(Alert, alert_id)
    assert alert is not None  # the foreign key cascades: a row always has its alert
    attachments = _attachment_data(state.config, session, alert)
    session.expunge(alert)
    return AlertRenderer(state.config, state.rt.templates, alert, attachments, now=state.rt.clock.now())


def _attachment_data(config: Config, session: Session, alert: Alert) -> list[AttachmentData]:
    if not alert.attachments or alert.queue_item_id is None:
        return []
    item = session.get(QueueItem, alert.queue_item_id)
    if item is None or item.message is None or not item.message.raw:
        return []
    mail = parse_mail(item.message.raw, config.limits.max_message_bytes)
    parts = dict(leaf_parts(mail.message))
    found = []
    for ref in alert.attachments:
        part = parts.get(ref.get("index"))
        payload = part.get_payload(decode=True) if part is not None else None
        if isinstance(payload, bytes):
            found.append(AttachmentData(ref.get("filename") or "bijlage", ref.get("content_type") or
                                        "application/octet-stream", payload))
    return found


# ---------------------------------------------------------------- sending


async def _send_batch(state: _Pass, pool: SmtpPool, jobs: list[_Job]) -> None:
    todo: asyncio.Queue[_Job] = asyncio.Queue()
    for job in jobs:
        todo.put_nowait(job)
    outcomes: asyncio.Queue[_Outcome | None] = asyncio.Queue()
    writer = asyncio.create_task(_writer(state, outcomes))
    await asyncio.gather(*(_sender(state, pool, todo, outcomes) for _ in range(pool.size)))
    untried = []
    while not todo.empty():
        untried.append(todo.get_nowait().delivery_id)
    outcomes.put_nowait(None)
    await writer
    if untried and state.writer_error is None:
        await asyncio.to_thread(_release, state, untried)
    if state.writer_error is not None:
        raise state.writer_error


async def _sender(state: _Pass, pool: SmtpPool, todo: asyncio.Queue[_Job],
                  outcomes: asyncio.Queue[_Outcome | None]) -> None:
    while not todo.empty() and not state.stopped():
        job = todo.get_nowait()
        if job.renderer is not None and job.member is not None:
            copy = job.renderer.render(job.member, job.delivery_id)
            sender, raw = copy.envelope_from, copy.raw
        else:
            sender = compose.plus_address(state.config.network.address, f"bounce-{job.delivery_id}")
            raw = job.raw or b""
        assert state.unrecorded is not None
        await state.unrecorded.acquire()  # released once the writer recorded the outcome
        result = await pool.send(sender, job.recipient, raw)
        outcomes.put_nowait(_Outcome(job, result))


async def _writer(state: _Pass, outcomes: asyncio.Queue[_Outcome | None]) -> None:
    """Record outcomes as they come, each group in one transaction (group commit)."""
    done = False
    while not done:
        first = await outcomes.get()
        group: list[_Outcome] = []
        if first is None:
            done = True
        else:
            group.append(first)
        while not outcomes.empty() and len(group) < WRITE_BATCH:
            item = outcomes.get_nowait()
            if item is None:
                done = True
            else:
                group.append(item)
        if not group:
            continue
        try:
            await asyncio.to_thread(_record, state, group)
        except Exception as error:  # stop the pass; the rows' leases run out, others retry them
            log.exception("delivery: recording %d outcomes failed; stopping this pass", len(group))
            state.writer_error = state.writer_error or error
        assert state.unrecorded is not None
        for _ in group:
            state.unrecorded.release()


def _record(state: _Pass, group: list[_Outcome]) -> None:
    rt, now = state.rt, state.rt.clock.now()
    with rt.sessions() as session, session.begin():
        sent = [o.job.delivery_id for o in group if o.result.accepted]
        mark_sent(session, sent, now)
        state.stats.sent += len(sent)
        for outcome in group:
            if outcome.result.outcome == "temporary":
                _temporary(state, session, outcome, now)
            elif outcome.result.outcome == "permanent":
                _permanent(state, session, outcome, now)


def _temporary(state: _Pass, session: Session, outcome: _Outcome, now: datetime) -> None:
    delivery = state.config.delivery
    tries = outcome.job.attempts + 1
    if tries >= delivery.max_attempts:
        mark_failed(session, outcome.job.delivery_id, f"gave up after {tries} tries: {outcome.result.detail}")
        state.stats.failed += 1
        return
    mark_retry(session, outcome.job.delivery_id, now + retry_delay(state.config, tries), outcome.result.detail)
    state.stats.retried += 1


def retry_delay(config: Config, tries: int) -> timedelta:
    """After the n-th failed try: base * 2**(n-1), at most the configured maximum."""
    delivery = config.delivery
    seconds = min(delivery.retry_base_seconds * (2 ** max(tries - 1, 0)), delivery.retry_max_seconds)
    return timedelta(seconds=seconds)


def _permanent(state: _Pass, session: Session, outcome: _Outcome, now: datetime) -> None:
    mark_failed(session, outcome.job.delivery_id, outcome.result.detail)
    state.stats.failed += 1
    member_id = outcome.job.member.id if outcome.job.member is not None else None
    member = session.get(Member, member_id) if member_id is not None else None
    if member is not None:
        count_hard_bounce(state.rt, session, member, now=now, reason=outcome.result.detail)


def _release(state: _Pass, delivery_ids: list[int]) -> None:
    with state.rt.sessions() as session, session.begin():
        release(session, delivery_ids, state.worker)


def _complete_alerts(state: _Pass) -> None:
    if not state.alerts_seen:
        return
    now = state.rt.clock.now()
    with state.rt.sessions() as session, session.begin():
        for alert_id in sorted(state.alerts_seen):
            if pending_count(session, alert_id) == 0:
                session.execute(update(Alert).where(Alert.id == alert_id, Alert.completed_at.is_(None))
                                .values(completed_at=now))
