"""Erasure: an address removed from the whole database, and retention's erasure of what expired.

``binrelay members erase ADDRESS`` and the retention job (members who left
longer than ``retention.days`` ago) both call ``erase_address``. It deletes the
address's own rows (``storage.members.erase_member``), drops its rate-limit
counters, replaces it in every text and JSON column (``storage.privacy``), and
rewrites every stored message or notice that still holds it, in any encoding
(``mail.redact``). What it changed is returned per column, for the operator.
"""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import datetime

from sqlalchemy.orm import Session

from mail.redact import contains, redact
from storage import limits, privacy
from storage.members import erase_member, normalise_email

BINARY_COLUMNS = ("messages.raw", "deliveries.raw")


def placeholder() -> str:
    """A stand-in for an erased address: random, so it cannot be traced back to the address."""
    return f"erased-{secrets.token_hex(8)}"


def erase_address(session: Session, email: str, now: datetime) -> Counter[str]:
    """Remove ``email`` from every table and every stored message; what changed, per "table.column"."""
    address = normalise_email(email)
    stand_in = placeholder()
    changed: Counter[str] = Counter()
    own = erase_member(session, address, stand_in, now)
    changed.update({"members": own.members, "confirmations": own.confirmations,
                    "deliveries.recipient": own.deliveries, "messages.from_address": own.messages})
    changed["rate_windows"] += limits.forget(session, address)
    for name in BINARY_COLUMNS:
        for pk, raw in list(privacy.stored_bytes(session, name)):
            if contains(raw, [address]):
                privacy.set_bytes(session, name, pk, redact(raw, [address], stand_in))
                changed[name] += 1
    changed.update(privacy.replace_everywhere(session, address, stand_in))
    return Counter({name: count for name, count in changed.items() if count})
