"""Retention: personal data goes after ``retention.days``; the statistics stay.

What is purged (see docs/privacy.md): a message's raw bytes, text, subject,
sender and Message-ID; an alert's text and original sender; the bytes of sent
notices and the addresses of finished deliveries; the actor of old audit
events. What stays: the classification (source, kind, category, wards,
urgency), queue decisions and their times, delivery counts: everything the
monthly report needs. Idempotent and batched; the daemon runs it daily.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from relay.service.runtime import Runtime
from storage.retention import purge_alerts, purge_audit_events, purge_deliveries, purge_messages

log = logging.getLogger("binrelay.retention")

BATCH = 1000


@dataclass
class PurgeStats:
    messages: int = 0
    alerts: int = 0
    deliveries: int = 0
    audit_events: int = 0

    @property
    def total(self) -> int:
        return self.messages + self.alerts + self.deliveries + self.audit_events


def purge(rt: Runtime, now: datetime) -> PurgeStats:
    """Purge everything older than the retention period, one batch per transaction."""
    cutoff = now - timedelta(days=rt.config.retention.days)
    stats = PurgeStats()
    for name, step in (("messages", purge_messages), ("alerts", purge_alerts),
                       ("deliveries", purge_deliveries), ("audit_events", purge_audit_events)):
        while True:
            with rt.sessions() as session, session.begin():
                done = step(session, cutoff, now, BATCH)
            setattr(stats, name, getattr(stats, name) + done)
            if done < BATCH:
                break
    if stats.total:
        log.info("retention: purged %d messages, %d alerts, %d deliveries, %d audit events older than %s",
                 stats.messages, stats.alerts, stats.deliveries, stats.audit_events, cutoff.date())
    return stats
