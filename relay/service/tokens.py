"""Unguessable single-use tokens, safe in a plus-address and a Subject.

Tokens are 80 random bits from ``secrets`` in lower-case base32 (16 characters
from ``a-z2-7``): some mail servers lower-case the local part of an address,
so the alphabet must survive that. Only a token's SHA-256 is stored.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

TOKEN_BYTES = 10  # 80 bits
TOKEN_PATTERN = re.compile(r"^[a-z2-7]{16}$")


def new_token() -> str:
    return base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode("ascii").lower()


def token_hash(token: str) -> str:
    """What the database keeps: the SHA-256 of the normalised token."""
    return hashlib.sha256(token.strip().lower().encode("ascii", "replace")).hexdigest()


def looks_like_token(value: str) -> bool:
    return bool(TOKEN_PATTERN.match(value.strip().lower()))
