"""Retention: personal data goes after ``retention.days``; the statistics stay.

What is purged (see docs/privacy.md and ``storage.privacy``): a message's raw
bytes, text, subject, sender and Message-ID; an alert's text and original
sender; the bytes of sent notices and the addresses of finished deliveries;
decided items' texts and coordinators; the actor of old audit events; expired
confirmations and old rate-limit counters; and members who left longer ago
are erased altogether (``relay.members.erasure``). What stays: the
classification (source, kind, category, wards, urgency), queue decisions and
their times, delivery counts: everything the monthly report needs. Idempotent
and batched; the daemon runs it daily.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from relay.members.erasure import erase_address
from relay.service.runtime import Runtime
from storage import limits, workers
from storage.queue import purge_duplicate_keys
from storage.retention import (
    former_members,
    purge_alerts,
    purge_audit_events,
    purge_confirmations,
    purge_deliveries,
    purge_messages,
    purge_queue_items,
)

log = logging.getLogger("binrelay.retention")

BATCH = 1000


@dataclass
class PurgeStats:
    messages: int = 0
    alerts: int = 0
    deliveries: int = 0
    audit_events: int = 0
    queue_items: int = 0
    confirmations: int = 0
    former_members: int = 0

    @property
    def total(self) -> int:
        return (self.messages + self.alerts + self.deliveries + self.audit_events + self.queue_items
                + self.confirmations + self.former_members)


def purge(rt: Runtime, now: datetime) -> PurgeStats:
    """Purge everything older than the retention period, one batch per transaction."""
    cutoff = now - timedelta(days=rt.config.retention.days)
    stats = PurgeStats()
    _erase_former_members(rt, cutoff, now, stats)
    for name, step in (("messages", purge_messages), ("alerts", purge_alerts),
                       ("deliveries", purge_deliveries), ("audit_events", purge_audit_events),
                       ("queue_items", purge_queue_items), ("confirmations", purge_confirmations)):
        while True:
            with rt.sessions() as session, session.begin():
                done = step(session, cutoff, now, BATCH)
            setattr(stats, name, getattr(stats, name) + done)
            if done < BATCH:
                break
    with rt.sessions() as session, session.begin():
        limits.purge_before(session, cutoff)
        workers.forget_jobs_before(session, cutoff)
        # Older than any merge window: no report can join through these any more.
        purge_duplicate_keys(session, now - timedelta(minutes=rt.config.approval.merge_window_minutes + 60))
    if stats.total:
        log.info("retention: purged %d messages, %d alerts, %d deliveries, %d audit events, %d queue items, "
                 "%d confirmations and erased %d former members, older than %s", stats.messages, stats.alerts,
                 stats.deliveries, stats.audit_events, stats.queue_items, stats.confirmations,
                 stats.former_members, cutoff.date())
    return stats


def _erase_former_members(rt: Runtime, cutoff: datetime, now: datetime, stats: PurgeStats) -> None:
    """Members who left before the cutoff are erased, one transaction each."""
    while True:
        with rt.sessions() as session:
            addresses = former_members(session, cutoff, BATCH)
        for address in addresses:
            with rt.sessions() as session, session.begin():
                erase_address(session, address, now)
            stats.former_members += 1
        if len(addresses) < BATCH:
            return
