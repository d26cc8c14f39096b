"""``binrelay status [--json]``: what an operator or a monitoring system asks first.

The last good pass of each mailbox, messages waiting, items pending per ward
with the oldest's age, deliveries pending and failing, members disabled by
bounces, the live workers. Exit 0 when all is well, 1 when something needs
attention (each reason one line; ``attention`` in the JSON). Times are local
with their offset. It only reads.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from typing import Any, TextIO

from relay.service.runtime import Runtime
from relay.service.texts import iso_time, shown_time
from storage.status import Figures, figures

EXIT_OK, EXIT_ATTENTION = 0, 1
# A mailbox not read for this long (the daemon reads it every few seconds; cron every few minutes).
QUIET_AFTER = timedelta(minutes=15)


def status_command(rt: Runtime, as_json: bool, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    now = rt.clock.now()
    with rt.sessions() as session:
        found = figures(session, now)
    attention = needs_attention(found, now, configured_sources=_configured_sources(rt))
    zone = rt.config.delivery.timezone
    if as_json:
        print(json.dumps(as_document(found, attention, now, zone), ensure_ascii=False), file=out)
    else:
        print_text(found, attention, now, zone, out)
    return EXIT_ATTENTION if attention else EXIT_OK


def _configured_sources(rt: Runtime) -> int:
    return int(rt.config.imap is not None) + int(rt.config.maildir is not None)


def needs_attention(found: Figures, now: datetime, configured_sources: int) -> list[str]:
    """Why an operator should look, one reason a line; empty when all is well."""
    reasons = []
    if configured_sources and not found.sources:
        reasons.append("no mailbox has been read yet (is binrelay running?)")
    for source in found.sources:
        if source.error is not None:
            reasons.append(f"{source.source}: {source.error}")
        elif source.checked_at is None or now - source.checked_at > QUIET_AFTER:
            reasons.append(f"{source.source}: not read for {_age(now, source.checked_at)} (is binrelay running?)")
    if found.messages_failed:
        reasons.append(f"{found.messages_failed} message(s) could not be routed (binrelay queue list)")
    if found.overdue_items:
        reasons.append(f"{found.overdue_items} item(s) wait past their escalation time")
    if found.deliveries_overdue:
        reasons.append(f"{found.deliveries_overdue} delivery(ies) overdue: nothing is sending")
    return reasons


def as_document(found: Figures, attention: list[str], now: datetime, zone: str) -> dict[str, Any]:
    def local(moment: datetime | None) -> str | None:
        return iso_time(moment, zone)

    return {
        "at": local(now),
        "ok": not attention,
        "attention": attention,
        "sources": [{"source": s.source, "last_read": local(s.checked_at), "failed_at": local(s.failed_at),
                     "error": s.error} for s in found.sources],
        "messages": {"waiting": found.messages_waiting, "failed": found.messages_failed},
        "pending": [{"ward": w.ward or None, "items": w.pending, "oldest": local(w.oldest),
                     "oldest_age_seconds": int((now - w.oldest).total_seconds())} for w in found.wards],
        "items_overdue": found.overdue_items,
        "deliveries": {"pending": found.deliveries_pending, "retrying": found.deliveries_retrying,
                       "overdue": found.deliveries_overdue, "failed_last_24h": found.deliveries_failed_today},
        "members_disabled_by_bounces": found.members_disabled,
        "workers": [{"host": host, "pid": pid, "since": local(started)} for host, pid, started in found.workers],
    }


def print_text(found: Figures, attention: list[str], now: datetime, zone: str, out: TextIO) -> None:
    def local(moment: datetime | None) -> str:
        return shown_time(moment, zone) if moment is not None else "never"

    print(f"binrelay status at {local(now)}: {'needs attention' if attention else 'ok'}", file=out)
    for reason in attention:
        print(f"  ! {reason}", file=out)
    print("mailboxes:", file=out)
    for source in found.sources or []:
        state = f"error since {local(source.failed_at)}: {source.error}" if source.error else "ok"
        print(f"  {source.source}: last read {local(source.checked_at)}; {state}", file=out)
    if not found.sources:
        print("  none read yet", file=out)
    print(f"messages: {found.messages_waiting} waiting to be routed, {found.messages_failed} failed", file=out)
    print("pending items:", file=out)
    for ward in found.wards:
        print(f"  {ward.ward or '(no ward)':24} {ward.pending:5}  oldest {_age(now, ward.oldest)} "
              f"({local(ward.oldest)})", file=out)
    if not found.wards:
        print("  none", file=out)
    print(f"deliveries: {found.deliveries_pending} pending ({found.deliveries_retrying} retrying, "
          f"{found.deliveries_overdue} overdue), {found.deliveries_failed_today} failed in the last 24 h", file=out)
    print(f"members disabled by bounces: {found.members_disabled}", file=out)
    print(f"live workers: {len(found.workers)}", file=out)
    for host, pid, started in found.workers:
        print(f"  {host} pid {pid} since {local(started)}", file=out)


def _age(now: datetime, moment: datetime | None) -> str:
    if moment is None:
        return "ever"
    minutes = int((now - moment).total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days"
