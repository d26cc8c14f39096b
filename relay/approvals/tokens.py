"""Approval tokens: single-use, unguessable, and only their hash is stored.

A reminder or escalation must repeat the item's token, yet the database keeps
only its hash. With a token key (``approval.token_key_env`` / ``token_key_file``,
never in the database) the token is an HMAC of the item's id and creation
time, so it can be derived again. When none is configured, binrelay makes
one itself (``approval.token_key_auto``): 32 random bytes in a 0600 file next
to the SQLite database, or in the service's state directory. Only with no key
at all is the token random, and a reminder then issues a fresh one (the
earlier request's token stops working).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from datetime import UTC
from pathlib import Path

from relay.config import Config
from relay.service.tokens import new_token, token_hash
from storage.models import QueueItem


def token_key(config: Config) -> bytes | None:
    """The configured HMAC key, or None (read at each use: a rotated file is picked up)."""
    approval = config.approval
    if approval.token_key_file is not None and approval.token_key_file.is_file():
        key = approval.token_key_file.read_bytes().strip()
        return key or None
    if approval.token_key_env:
        value = os.environ.get(approval.token_key_env, "").strip()
        if value:
            return value.encode()
    return local_key(config) if approval.token_key_auto else None


def local_key_path(config: Config) -> Path:
    """Beside the SQLite file; else systemd's state directory, else the user's."""
    url = config.database.url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url.removeprefix("sqlite:///")).parent / "binrelay-token.key"
    state = os.environ.get("STATE_DIRECTORY") or os.environ.get("XDG_STATE_HOME")
    base = Path(state.split(":")[0]) if state else Path.home() / ".local" / "state"
    return (base if os.environ.get("STATE_DIRECTORY") else base / "binrelay") / "binrelay-token.key"


def local_key(config: Config) -> bytes | None:
    """Read the generated key, creating it once (two processes racing both end with the same file)."""
    path = local_key_path(config)
    try:
        return path.read_bytes().strip() or None
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip() or None
    except OSError:
        return None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path.read_bytes().strip() or None


def derive_token(key: bytes, item: QueueItem) -> str:
    """16 characters a-z2-7 (80 bits), like ``relay.service.tokens.new_token``."""
    # UTC, microseconds: the same text before and after a database round trip.
    stamp = item.created_at.astimezone(UTC).isoformat(timespec="microseconds")
    digest = hmac.new(key, f"binrelay-approval:{item.id}:{stamp}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()


def placeholder_hash() -> str:
    """A unique, unusable hash for the moment between INSERT (for the id) and ``issue_token``."""
    return hashlib.sha256(b"placeholder:" + new_token().encode()).hexdigest()


def issue_token(config: Config, item: QueueItem) -> str:
    """Give a flushed item (it has an id) its token; returns the token to mail out."""
    key = token_key(config)
    token = derive_token(key, item) if key else new_token()
    item.token_hash = token_hash(token)
    return token


def token_for_resend(config: Config, item: QueueItem) -> tuple[str, bool]:
    """The token to put in a reminder: (token, renewed).

    ``renewed`` is True when the token had to be replaced (no key configured).
    """
    key = token_key(config)
    if key:
        token = derive_token(key, item)
        if token_hash(token) == item.token_hash:
            return token, False
    token = new_token()
    item.token_hash = token_hash(token)
    return token, True
