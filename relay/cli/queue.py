"""``binrelay queue ...``: the approval queue for operators.

Decisions go through the same ``decide`` as email replies, so they are as
atomic and land in the same audit trail (actor ``operator:<user>``).
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from relay.approvals.decide import Decision, decide
from relay.cli.output import print_listing
from relay.service import texts
from relay.service.runtime import Runtime
from relay.service.texts import iso_time, shown_time
from storage.audit import events_for_item
from storage.corrections import corrections_for_item
from storage.models import Correction, QueueItem
from storage.queue import item_by_id, pending_items

EXIT_OK = 0
EXIT_FAILURE = 1


def item_summary(item: QueueItem, zone: str = "UTC") -> dict[str, Any]:
    """One item's fields; times in ``zone`` (the network's) with their offset."""
    message = item.message
    record = message.classification if message is not None else None
    return {
        "id": item.id,
        "kind": item.kind,
        "status": item.status,
        "source": item.source,
        "category": item.category,
        "urgency": item.urgency,
        "wards": list(item.proposed_wards or []),
        "target_wards": item.target_wards,
        "partners": list(item.partners or []),
        "sender": message.from_address if message is not None else None,
        "sender_assurance": record.sender_assurance if record is not None else None,
        "sender_notes": list(record.sender_notes or []) if record is not None else [],
        "claimed_source": record.claimed_source if record is not None else None,
        "subject": message.subject if message is not None else None,
        "created_at": iso_time(item.created_at, zone),
        "expires_at": iso_time(item.expires_at, zone),
        "decided_at": iso_time(item.decided_at, zone),
        "decided_by": item.decided_by,
        "reason": item.reason,
        "warnings": list(item.warnings or []),
    }


def queue_list(rt: Runtime, as_json: bool, out: TextIO | None = None) -> int:
    """Pending items, oldest first: one JSON object per line with ``--json``, else a table."""
    out = out or sys.stdout
    with rt.sessions() as session:
        rows = [item_summary(item, rt.config.delivery.timezone) for item in pending_items(session)]
    print_listing(rows, as_json=as_json, out=out, empty="no pending items",
                  header=f"{'ID':>6}  {'RECEIVED':22}  {'KIND':14}  {'URGENCY':7}  {'WARDS':20}  SUBJECT",
                  line=_queue_line)
    return EXIT_OK


def _queue_line(row: dict[str, Any]) -> str:
    received = f"{row['created_at'][:16]}{row['created_at'][19:]}".replace("T", " ")  # minutes and offset
    wards = ",".join(row["wards"]) or "-"
    subject = (row["subject"] or "").replace("\n", " ")[:60]
    return f"{row['id']:>6}  {received:22}  {row['kind']:14}  {row['urgency']:7}  {wards:20}  {subject}"


def queue_show(rt: Runtime, item_id: int, out: TextIO | None = None) -> int:
    """One item: its fields, the message text, the coordinators' corrections and its audit trail."""
    out = out or sys.stdout
    with rt.sessions() as session:
        item = item_by_id(session, item_id)
        if item is None:
            print(f"binrelay: no queue item {item_id}", file=sys.stderr)
            return EXIT_FAILURE
        summary = item_summary(item, rt.config.delivery.timezone)
        text = item.edited_text or (item.message.body_text if item.message is not None else None) or ""
        zone = rt.config.delivery.timezone
        events = [(shown_time(e.at, zone), e.actor, e.action, e.detail) for e in events_for_item(session, item_id)]
        corrections = [correction_line(c, zone) for c in corrections_for_item(session, item_id)]
    for key, value in summary.items():
        if value not in (None, [], ""):
            print(f"{key + ':':13} {value}", file=out)
    print("\n----- message -----", file=out)
    print(texts.trim_text(text, 20000, "en"), file=out)
    print("----- end of message -----\n", file=out)
    if corrections:
        print("corrections (the rules overruled):", file=out)
        for line in corrections:
            print(f"  {line}", file=out)
        print(file=out)
    print("audit trail:", file=out)
    for at, actor, action, detail in events:
        print(f"  {at}  {actor}  {action}  {json.dumps(detail, ensure_ascii=False)}",
              file=out)
    return EXIT_OK


def correction_line(correction: Correction, zone: str = "UTC") -> str:
    """ "2026-11-03 15:21:43+01:00  urgency: normal -> urgent  by ward_coordinator"."""
    return (f"{shown_time(correction.at, zone)}  {correction.field}: {correction.old_value or '-'}"
            f" -> {correction.new_value}  by {correction.role}")


def queue_approve(rt: Runtime, item_id: int, operator: str, out: TextIO | None = None) -> int:
    return _decide(rt, item_id, Decision("approve"), operator, out or sys.stdout)


def queue_reject(rt: Runtime, item_id: int, reason: str | None, operator: str, out: TextIO | None = None) -> int:
    return _decide(rt, item_id, Decision("reject", reason=reason), operator, out or sys.stdout)


def _decide(rt: Runtime, item_id: int, decision: Decision, operator: str, out: TextIO) -> int:
    actor = operator if operator.startswith("operator:") else f"operator:{operator}"
    now = rt.clock.now()
    with rt.sessions() as session, session.begin():
        item = item_by_id(session, item_id)
        if item is None:
            print(f"binrelay: no queue item {item_id}", file=sys.stderr)
            return EXIT_FAILURE
        if item.status != "pending":
            print(f"binrelay: item {item_id} is already {item.status}"
                  f" (by {item.decided_by or '?'} at {texts.local_time(item.decided_at, rt.config.delivery.timezone)})", file=sys.stderr)
            return EXIT_FAILURE
        won = decide(rt, session, item, decision, actor=actor, now=now)
        if not won:
            session.refresh(item)
            print(f"binrelay: item {item_id} was just decided by {item.decided_by or '?'}", file=sys.stderr)
            return EXIT_FAILURE
    print(f"item {item_id} {decision.status}", file=out)
    return EXIT_OK
