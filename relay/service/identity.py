"""The sender identity of a stored message, as the rules decided it when it was routed.

``rules.sender.identify`` decides once per message; the pipeline stores its
result (``Message.from_address``, ``ClassificationRecord.sender_assurance`` and
``sender_notes``). Every path that acts on a sender reads it back here, so none
of them parses the From header in its own way.
"""

from __future__ import annotations

from rules.sender import Assurance, SenderIdentity
from storage.models import Message


def identity_of(message: Message) -> SenderIdentity:
    record = message.classification
    address = (message.from_address or "").strip().lower() or None
    if record is None:
        return SenderIdentity(None, Assurance.UNAUTHENTICATED, ("the message was not classified",))
    return SenderIdentity(address, Assurance(record.sender_assurance or Assurance.UNAUTHENTICATED),
                          tuple(str(note) for note in record.sender_notes or ()))
