"""Sending what is due in the outbox.

``deliver_pending`` claims due rows in batches, renders each alert copy just
before it is sent, sends over ``config.smtp.connections`` reused connections
concurrently (one sender thread per connection, see ``relay.delivery.smtp``;
they stay open between passes, ``smtp_pool``) and records every outcome right
after the server answered. Three kinds of thread share the work: the caller
claims the next batch when the queue runs below half a batch, the senders
send, one writer records outcomes.

- accepted: marked sent by the writer in group commits (one transaction per
  ``GATHER_SECONDS``), so a mark trails the server's "250" by at most one
  group. Senders may run at most ``in_flight_limit(connections)`` messages
  ahead of the marks (16 per connection): after a crash only those can be sent
  twice, the in-flight rule. A smaller limit means more, smaller commits;
  bench/fanout.py shows the cost;
- temporary (4xx, lost connection, timeout): retried with exponential backoff
  (``delivery.retry_base_seconds`` doubling up to ``retry_max_seconds``), failed
  after ``delivery.max_attempts`` tries;
- permanent (5xx): failed, and a hard bounce for the member (see ``bounces``).

A ``stop`` event is checked before every message; rows not tried are released.
Claims belong to this process's worker (relay.service.workers): another
process takes them over within seconds once its heartbeat stops, and this one
sends only while its own heartbeat is fresh, so a row is never sent by two
live processes. The claim lease (``delivery.claim_lease_seconds``) is the
fallback when heartbeats cannot be written; it must be far longer than two
batches take to send.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Row
from sqlalchemy.orm import Session

from mail.message import leaf_parts, parse_mail
from relay.config import Config
from relay.delivery.bounces import count_hard_bounce
from relay.delivery.render import AlertRenderer, AttachmentData
from relay.delivery.smtp import SendResult, SmtpPool, classify_error
from relay.delivery.verp import return_path
from relay.service.runtime import Runtime
from relay.service.workers import Presence, present
from storage.members import member_rows
from storage.models import Alert, Member, QueueItem
from storage.outbox import (
    claim_due_rows,
    mark_failed,
    mark_retry,
    mark_sent,
    pending_count,
    release,
)
from storage.queue import mark_alert_complete

log = logging.getLogger("binrelay.delivery")

# Most outcomes one writer transaction records at once.
WRITE_BATCH = 500
# After the first outcome, the writer waits this long for more to join the
# same commit: fewer, larger transactions (a commit costs ~1 ms of Python).
GATHER_SECONDS = 0.01
# Accepted-but-not-yet-recorded messages per connection: the most a crash can
# make us send twice is ``in_flight_limit(connections)``.
UNRECORDED_PER_CONNECTION = 16


def in_flight_limit(connections: int) -> int:
    """The most messages that can be accepted by the server but not yet marked sent."""
    return max(8, UNRECORDED_PER_CONNECTION * connections)


@dataclass
class DeliverStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0  # the member left or was disabled after the alert was queued
    unreachable: str | None = None  # why the SMTP server could not be reached, when it could not


@dataclass
class _Job:
    delivery_id: int
    recipient: str
    attempts: int
    raw: bytes | None = None  # notices
    renderer: AlertRenderer | None = None  # alert copies
    member: Any = None  # a member row: id, email, ward, language, unsubscribe_token
    # Past this the claim may be another process's: the job is dropped unsent.
    send_before: datetime | None = None


@dataclass
class _Outcome:
    job: _Job
    result: SendResult


@dataclass
class _Pass:
    """State of one ``deliver_pending`` call, shared by its threads."""

    rt: Runtime
    stop: threading.Event | None
    presence: Presence
    stats: DeliverStats = field(default_factory=DeliverStats)
    renderers: dict[int, AlertRenderer] = field(default_factory=dict)
    alerts_seen: set[int] = field(default_factory=set)
    # Claimed by this pass and not yet recorded: never queued twice.
    in_progress: set[int] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    idle: threading.Condition = field(init=False)
    unrecorded: threading.Semaphore = field(init=False)
    writer_error: BaseException | None = None
    untried: list[int] = field(default_factory=list)  # taken from the queue after a stop
    finished: threading.Event = field(default_factory=threading.Event)  # no more jobs will come
    wanted: threading.Event = field(default_factory=threading.Event)  # senders: the queue runs low
    more: threading.Event = field(default_factory=threading.Event)  # feeder: jobs were queued

    def __post_init__(self) -> None:
        self.idle = threading.Condition(self.lock)
        self.unrecorded = threading.Semaphore(in_flight_limit(self.config.smtp.connections))

    def stopped(self) -> bool:
        return (self.writer_error is not None or self.stats.unreachable is not None or not self.presence.fresh()
                or (self.stop is not None and self.stop.is_set()))

    @property
    def config(self) -> Config:
        return self.rt.config

    @property
    def worker(self) -> str:
        return self.rt.worker_id


def deliver_pending(rt: Runtime, stop: threading.Event | None = None) -> DeliverStats:
    """Send everything due now; returns what happened. Safe to run in several processes."""
    with present(rt) as presence:
        return _deliver(_Pass(rt, stop, presence))


POOL = "smtp_pool"  # the runtime's slot for the connections kept between passes
# The delivery thread and a scheduled job (the monthly report) may start a pass at the same moment.
_POOL_LOCK = threading.Lock()


def smtp_pool(rt: Runtime) -> SmtpPool:
    """This process's SMTP connections, kept between passes (a new configuration gets new ones)."""
    with _POOL_LOCK:
        pool = rt.extras.get(POOL)
        if isinstance(pool, SmtpPool) and pool.config == rt.config.smtp:
            return pool
        _close_pool(rt)
        pool = rt.extras[POOL] = SmtpPool(rt.config.smtp)
        return pool


def close_connections(rt: Runtime) -> None:
    """QUIT every kept SMTP session (at shutdown)."""
    with _POOL_LOCK:
        _close_pool(rt)


def _close_pool(rt: Runtime) -> None:
    pool = rt.extras.pop(POOL, None)
    if isinstance(pool, SmtpPool):
        pool.close()


def _deliver(state: _Pass) -> DeliverStats:
    pool = smtp_pool(state.rt)
    todo: deque[_Job] = deque()
    outcomes: queue.SimpleQueue[_Outcome | None] = queue.SimpleQueue()
    writer = threading.Thread(target=_writer, args=(state, outcomes), name="delivery-writer")
    senders = [threading.Thread(target=_sender, args=(state, pool, todo, outcomes), name=f"delivery-{n}")
               for n in range(pool.size)]
    writer.start()
    for thread in senders:
        thread.start()
    try:
        _feed(state, todo)
    finally:
        state.finished.set()
        for thread in senders:
            thread.join()
        outcomes.put(None)
        writer.join()
    _release_untried(state, todo)
    _complete_alerts(state)
    if state.writer_error is not None:
        raise state.writer_error
    if state.stats.sent or state.stats.retried or state.stats.failed:
        log.info("delivery: %d sent, %d to retry, %d failed, %d skipped", state.stats.sent,
                 state.stats.retried, state.stats.failed, state.stats.skipped)
    return state.stats


def _feed(state: _Pass, todo: deque[_Job]) -> None:
    """Claim batches and queue them until nothing is due (after everything queued was recorded).

    The next batch is claimed when the queue runs below half a batch, so the
    senders never wait for a claim; threads wake per batch, not per message.
    """
    low_water = max(state.config.delivery.batch_size // 2, 1)
    while not state.stopped():
        while len(todo) >= low_water and not state.stopped():
            state.wanted.wait(0.05)
            state.wanted.clear()
        if state.stopped():
            return
        jobs = _claim_batch(state)
        if not jobs:
            # Outcomes still being recorded may queue more (a bounce notice):
            # look once more when all is quiet.
            with state.idle:
                while state.in_progress and not state.stopped():
                    state.idle.wait(0.1)
            if state.stopped():
                return
            jobs = _claim_batch(state)
            if not jobs:
                return
        todo.extend(jobs)
        state.more.set()


# ---------------------------------------------------------------- claiming


def _claim_batch(state: _Pass) -> list[_Job]:
    """Claim due rows and turn them into jobs (Core rows, no ORM: this runs beside the senders)."""
    config, now = state.config, state.rt.clock.now()
    lease = timedelta(seconds=config.delivery.claim_lease_seconds)
    with _engine(state.rt).begin() as connection:
        rows = claim_due_rows(connection, state.worker, now, config.delivery.batch_size, lease)
        with state.lock:
            rows = [row for row in rows if row.id not in state.in_progress]
        members = _members_of(connection, rows)
        jobs, gone = [], []
        for row in rows:
            job = _job_for(state, connection, row, members)
            if job is None:
                gone.append(row.id)
            else:
                jobs.append(job)
        for delivery_id in gone:
            mark_failed(connection, delivery_id, "recipient is no longer an active member")
        state.stats.skipped += len(gone)
    send_before = now + lease - min(lease * 0.1, timedelta(seconds=10))
    for job in jobs:
        job.send_before = send_before
    with state.lock:
        state.in_progress.update(job.delivery_id for job in jobs)
    return jobs


def _members_of(connection: Connection, rows: list[Row[Any]]) -> dict[int, Any]:
    return member_rows(connection, {row.member_id for row in rows if row.member_id is not None})


def _job_for(state: _Pass, connection: Connection, row: Row[Any], members: dict[int, Any]) -> _Job | None:
    if row.alert_id is None:
        return _Job(row.id, row.recipient, row.attempts, raw=row.raw or b"")
    member = members.get(row.member_id) if row.member_id is not None else None
    if member is None or member.status != "active":
        return None
    state.alerts_seen.add(row.alert_id)
    renderer = state.renderers.get(row.alert_id)
    if renderer is None:
        # On the claim's own connection: a second one would wait for SQLite's write lock.
        with Session(bind=connection) as session:
            renderer = _renderer_for(state, session, row.alert_id)
        state.renderers[row.alert_id] = renderer
    return _Job(row.id, row.recipient, row.attempts, renderer=renderer, member=member)


def _renderer_for(state: _Pass, session: Session, alert_id: int) -> AlertRenderer:
    alert = session.get(Alert, alert_id)
    assert alert is not None  # the foreign key cascades: a row always has its alert
    attachments = _attachment_data(state.config, session, alert)
    session.expunge(alert)
    return AlertRenderer(state.config, state.rt.templates, state.rt.classifier.rules, state.rt.signer, alert,
                         attachments, now=state.rt.clock.now())


def _attachment_data(config: Config, session: Session, alert: Alert) -> list[AttachmentData]:
    if not alert.attachments or alert.queue_item_id is None:
        return []
    item = session.get(QueueItem, alert.queue_item_id)
    if item is None or item.message is None or not item.message.raw:
        return []
    # The attachments' bytes are not kept twice: they are read from the stored message, once per
    # alert and pass (the one read of a message's raw bytes after routing).
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


def _sender(state: _Pass, pool: SmtpPool, todo: deque[_Job], outcomes: queue.SimpleQueue[_Outcome | None]) -> None:
    low_water = max(state.config.delivery.batch_size // 2, 1)
    while not state.stopped():
        try:
            job = todo.popleft()  # atomic: no lock needed
        except IndexError:
            if state.finished.is_set():
                return
            state.wanted.set()
            state.more.wait(0.05)
            state.more.clear()
            continue
        if len(todo) < low_water:
            state.wanted.set()
        if job.send_before is not None and state.rt.clock.now() >= job.send_before:
            _drop_expired(state, job)
            continue
        if state.stopped():
            with state.lock:
                state.untried.append(job.delivery_id)
            return
        state.unrecorded.acquire()  # released once the writer recorded the outcome
        result = _send_one(state, pool, job)
        outcomes.put(_Outcome(job, result))
        if result.unreachable:
            # No use trying every other row against a server that is down:
            # stop the pass; the rest is released and tried next time. Said once a pass, by the first.
            with state.lock:
                first = state.stats.unreachable is None
                state.stats.unreachable = state.stats.unreachable or result.detail or "no answer"
            if first:
                log.warning("SMTP server unreachable (%s); delivery pass stopped", result.detail)


def _drop_expired(state: _Pass, job: _Job) -> None:
    """The claim's lease ran out while the job waited: another process may own the row now."""
    log.warning("delivery %s: claim expired before sending; left for the next pass", job.delivery_id)
    with state.idle:
        state.in_progress.discard(job.delivery_id)
        state.idle.notify_all()


def _send_one(state: _Pass, pool: SmtpPool, job: _Job) -> SendResult:
    """Render and send one job; never raises, so every claimed row gets an outcome."""
    try:
        if job.renderer is not None and job.member is not None:
            copy = job.renderer.render(job.member, job.delivery_id)
            sender, raw = copy.envelope_from, copy.raw
        else:
            sender = return_path(state.config, state.rt.signer, job.delivery_id)
            raw = job.raw or b""
        return pool.send(sender, job.recipient, raw)
    except Exception as error:
        log.exception("delivery %s: could not render or send", job.delivery_id)
        return classify_error(error)


def _writer(state: _Pass, outcomes: queue.SimpleQueue[_Outcome | None]) -> None:
    """Record outcomes in groups, one transaction each (group commit).

    After the first outcome of a group the writer sleeps ``GATHER_SECONDS`` and
    takes everything that arrived meanwhile: one wake-up and one commit per
    group instead of per message. The in-flight limit bounds a group.
    """
    with _engine(state.rt).connect() as connection:  # held: no pool round trip per group
        _write_loop(state, outcomes, connection)


def _write_loop(state: _Pass, outcomes: queue.SimpleQueue[_Outcome | None], connection: Connection) -> None:
    done = False
    while not done:
        first = outcomes.get()
        if first is None:
            break
        time.sleep(GATHER_SECONDS)
        group = [first]
        while len(group) < WRITE_BATCH:
            try:
                item = outcomes.get_nowait()
            except queue.Empty:
                break
            if item is None:
                done = True
                break
            group.append(item)
        _record_group(state, connection, group)


def _record_group(state: _Pass, connection: Connection, group: list[_Outcome]) -> None:
    try:
        if state.writer_error is None:
            _record(state, connection, group)
    except Exception as error:  # stop the pass; the rows' leases run out, others retry them
        log.exception("delivery: recording %d outcomes failed; stopping this pass", len(group))
        state.writer_error = error
    finally:
        with state.idle:
            state.in_progress.difference_update(o.job.delivery_id for o in group)
            state.idle.notify_all()
        state.unrecorded.release(len(group))


def _record(state: _Pass, connection: Connection, group: list[_Outcome]) -> None:
    now = state.rt.clock.now()
    if all(o.result.accepted for o in group):
        # The common case, kept lean (Core, no ORM session): it runs once per group.
        with connection.begin():
            mark_sent(connection, [o.job.delivery_id for o in group], now)
        state.stats.sent += len(group)
        return
    with connection.begin(), Session(bind=connection) as session:
        sent = [o.job.delivery_id for o in group if o.result.accepted]
        mark_sent(session, sent, now)
        state.stats.sent += len(sent)
        for outcome in group:
            if outcome.result.outcome == "temporary":
                _temporary(state, session, outcome, now)
            elif outcome.result.outcome == "permanent":
                _permanent(state, session, outcome, now)
        session.flush()  # the session only joined the connection's transaction, which commits


def _engine(rt: Runtime) -> Engine:
    bind = rt.sessions.kw.get("bind")
    assert isinstance(bind, Engine), "the session factory must be bound to an engine"
    return bind


def _temporary(state: _Pass, session: Session, outcome: _Outcome, now: datetime) -> None:
    delivery = state.config.delivery
    if outcome.result.unreachable:
        # The server, not this recipient: no attempt is counted, or a long
        # outage would use up the attempts of whichever rows came first.
        release(session, [outcome.job.delivery_id], state.worker)
        state.stats.retried += 1
        return
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
    if not outcome.result.recipient_refused:
        return  # the sender, the content or our own encoding: not the member's address
    member_id = outcome.job.member.id if outcome.job.member is not None else None
    member = session.get(Member, member_id) if member_id is not None else None
    if member is not None:
        count_hard_bounce(state.rt, session, member, now=now, reason=outcome.result.detail)


def _release_untried(state: _Pass, todo: deque[_Job]) -> None:
    untried = list(state.untried) + [job.delivery_id for job in todo]
    if not untried:
        return
    with state.rt.sessions() as session, session.begin():
        release(session, untried, state.worker)


def _complete_alerts(state: _Pass) -> None:
    if not state.alerts_seen:
        return
    now = state.rt.clock.now()
    with state.rt.sessions() as session, session.begin():
        for alert_id in sorted(state.alerts_seen):
            if pending_count(session, alert_id) == 0:
                mark_alert_complete(session, alert_id, now)
