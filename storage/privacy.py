"""Where personal data can be, how long it stays, and how an address is removed from all of it.

``PERSONAL_DATA`` is the one list of every column that can hold personal data
(an address, a name, a text a person wrote), with what it holds and how long
it is kept; ``docs/privacy.md`` states the same, and a test checks they agree
and that every text or binary column of every table is either listed here or
in ``NOT_PERSONAL``.

``replace_everywhere`` finds an address in every text and JSON column of the
whole database and replaces it; ``stored_bytes``/``set_bytes`` let the caller
rewrite binary columns (stored messages), which needs the mail layer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from sqlalchemy import JSON, Column, LargeBinary, String, Table, Text, cast, func, select, update
from sqlalchemy.orm import Session

from storage.models import Base

# column -> (what it holds, how long it is kept)
PERSONAL_DATA: dict[str, tuple[str, str]] = {
    "messages.raw": ("an incoming message as received", "retention, then removed"),
    "messages.from_address": ("its sender's address", "retention, then removed"),
    "messages.subject": ("its subject", "retention, then removed"),
    "messages.body_text": ("its readable text", "retention, then removed"),
    "messages.message_id": ("its Message-ID (often holds the sender's domain)", "retention, then removed"),
    "messages.error": ("why routing it failed", "retention, then removed"),
    "messages.facts": ("its sender's names and addresses and its attachments' names, as parsed",
                       "retention, then removed"),
    "messages.signature": ("the letter groups of its text, to find duplicates", "retention, then removed"),
    "alerts.original_sender": ("who sent the message an alert was made of (for replies)", "retention, then removed"),
    "alerts.subject": ("the alert's subject as members read it (scrubbed)", "kept (no names or addresses)"),
    "alerts.body": ("the alert's text as members read it (scrubbed)", "retention, then removed"),
    "alerts.attachments": ("the names of attachments passed on (scrubbed)", "kept (no names or addresses)"),
    "deliveries.recipient": ("the address a message was sent to", "retention, then a stand-in"),
    "deliveries.raw": ("the bytes of a notice (requests, answers, confirmations)", "retention, then removed"),
    "deliveries.last_error": ("the mail server's last answer (may name the address)", "retention, then removed"),
    "members.email": ("a member's address", "while a member; left members are erased after retention"),
    "members.name": ("a member's name", "as members.email"),
    "members.postcode": ("a member's postcode", "as members.email"),
    "members.preferences": ("a member's settings", "as members.email"),
    "members.unsubscribe_token": ("a member's personal unsubscribe code", "as members.email"),
    "confirmations.email": ("an address that asked to join or change something",
                            "until used or expired, then deleted after retention"),
    "confirmations.postcode": ("the postcode it gave", "as confirmations.email"),
    "confirmations.payload": ("the change it asked for", "as confirmations.email"),
    "queue_items.decided_by": ("the coordinator who decided", "kept with the decision"),
    "queue_items.reason": ("a coordinator's reason for rejecting", "kept with the decision"),
    "queue_items.edited_text": ("a coordinator's edited text", "kept with the decision"),
    "queue_items.proposed_recipient": ("whom a member's reply would be passed to", "kept with the decision"),
    "queue_items.warnings": ("what a coordinator was warned about (may quote the text)", "kept with the decision"),
    "audit_events.actor": ("who did something (an address or operator:<user>)", "retention, then 'purged'"),
    "audit_events.detail": ("what they did", "retention, then emptied"),
}
# Columns that hold codes, ids, statuses, rule results or digests: never a person's data.
NOT_PERSONAL = frozenset({
    "alerts.wards", "alerts.source", "alerts.source_label", "alerts.category", "alerts.urgency",
    "alerts.message_id_header", "alerts.tag", "alerts.thread_tag",
    "confirmations.ward", "confirmations.language", "confirmations.action", "confirmations.token_hash",
    "mailbox_state.source", "members.ward", "members.language", "members.status",
    "duplicate_keys.category", "duplicate_keys.ward",
    "messages.dedup_key", "messages.origin", "messages.origin_ref", "messages.status",
    "classifications.source", "classifications.kind", "classifications.command", "classifications.category",
    "classifications.wards", "classifications.urgency", "classifications.explanation",
    "classifications.partner_name", "classifications.sender_assurance", "classifications.sender_notes",
    "classifications.claimed_source",
    "deliveries.purpose", "deliveries.status", "deliveries.claimed_by",
    "queue_items.kind", "queue_items.status", "queue_items.source", "queue_items.category", "queue_items.urgency",
    "queue_items.proposed_wards", "queue_items.target_wards", "queue_items.partners", "queue_items.token_hash",
    "audit_events.action", "rate_windows.bucket", "rate_windows.key",
    "corrections.field", "corrections.old_value", "corrections.new_value", "corrections.role", "corrections.wards",
    "workers.id", "workers.host", "job_runs.job", "job_runs.period", "job_runs.worker",
    # A source's label and its server's error: at most the shared mailbox's own login, never a member's.
    "source_health.source", "source_health.error",
})
TEXT_TYPES = (String, Text, JSON)


def columns() -> Iterator[tuple[str, Column[Any]]]:
    """("table.column", column) of every text, JSON and binary column of every table."""
    for table in Base.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, (*TEXT_TYPES, LargeBinary)):
                yield f"{table.name}.{column.name}", column


def replace_everywhere(session: Session, needle: str, replacement: str) -> Counter[str]:
    """Replace ``needle`` (case-insensitive) in every text and JSON column; rows changed per column."""
    changed: Counter[str] = Counter()
    pattern = re.compile(re.escape(needle), re.IGNORECASE)
    like = "%" + needle.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    for name, column in columns():
        if isinstance(column.type, LargeBinary):
            continue
        table = column.table
        assert isinstance(table, Table)
        key = list(table.primary_key.columns)
        as_text = cast(column, Text) if isinstance(column.type, JSON) else column
        query = select(*key, column).where(func.lower(as_text).like(like, escape="\\"))
        for row in session.execute(query).all():
            new = _replace_in(row[-1], pattern, replacement)
            condition = [part == value for part, value in zip(key, row[:-1], strict=True)]
            session.execute(update(table).where(*condition).values({column.key: new})
                            .execution_options(synchronize_session=False))
            changed[name] += 1
    return changed


def stored_bytes(session: Session, name: str) -> Iterator[tuple[Any, bytes]]:
    """(primary key, bytes) of every non-empty value of binary column ``name`` ("messages.raw")."""
    column = _column(name)
    table = column.table
    assert isinstance(table, Table)
    [key] = list(table.primary_key.columns)
    query = select(key, column).where(column.is_not(None)).order_by(key).execution_options(yield_per=200)
    for pk, value in session.execute(query):
        yield pk, bytes(value)


def set_bytes(session: Session, name: str, pk: Any, value: bytes | None) -> None:
    column = _column(name)
    table = column.table
    assert isinstance(table, Table)
    [key] = list(table.primary_key.columns)
    session.execute(update(table).where(key == pk).values({column.key: value})
                    .execution_options(synchronize_session=False))


def _column(name: str) -> Column[Any]:
    found = dict(columns()).get(name)
    if found is None:
        raise KeyError(name)
    return found


def _replace_in(value: Any, pattern: re.Pattern[str], replacement: str) -> Any:
    if isinstance(value, str):
        return pattern.sub(replacement, value)
    if isinstance(value, list):
        return [_replace_in(item, pattern, replacement) for item in value]
    if isinstance(value, dict):
        return {key: _replace_in(item, pattern, replacement) for key, item in value.items()}
    return value
