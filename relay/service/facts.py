"""A stored message's facts: what routing found when it parsed it (``mail.facts``).

Messages routed before the facts were kept (migration 0008) are parsed once
more here, the only place that still reads raw bytes for them; a purged
message has none.
"""

from __future__ import annotations

from mail.facts import NO_FACTS, MailFacts
from mail.message import parse_mail
from storage.models import Message


def facts_of(message: Message | None, max_bytes: int | None = None) -> MailFacts:
    if message is None:
        return NO_FACTS
    if message.facts is not None:
        return MailFacts.from_json(message.facts)
    if message.raw:
        return MailFacts.of(parse_mail(message.raw, max_bytes))
    return NO_FACTS
