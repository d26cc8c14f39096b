"""Approval tokens: an item's capability, signed, single-use, and only their hash is stored.

A reminder or escalation must repeat the item's token, yet the database keeps
only its hash: the token is a signature (``relay.service.tokens.Signer``) of
the item's id and creation time, so it can be derived again. After a key
rotation the old token no longer derives; the reminder then carries a fresh
random token instead (and the earlier request's stops working).
"""

from __future__ import annotations

import hashlib
from datetime import UTC

from relay.service.tokens import Signer, new_token, token_hash
from storage.models import QueueItem


def derive_token(signer: Signer, item: QueueItem) -> str:
    # UTC, microseconds: the same text before and after a database round trip.
    stamp = item.created_at.astimezone(UTC).isoformat(timespec="microseconds")
    return signer.sign("approval", item.id, stamp)


def placeholder_hash() -> str:
    """A unique, unusable hash for the moment between INSERT (for the id) and ``issue_token``."""
    return hashlib.sha256(b"placeholder:" + new_token().encode()).hexdigest()


def issue_token(signer: Signer, item: QueueItem) -> str:
    """Give a flushed item (it has an id) its token; returns the token to mail out."""
    token = derive_token(signer, item)
    item.token_hash = token_hash(token)
    return token


def token_for_resend(signer: Signer, item: QueueItem) -> tuple[str, bool]:
    """The token to put in a reminder: (token, renewed), renewed after a key rotation."""
    token = derive_token(signer, item)
    if token_hash(token) == item.token_hash:
        return token, False
    token = new_token()
    item.token_hash = token_hash(token)
    return token, True
