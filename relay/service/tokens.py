"""Capabilities: unguessable tokens that only their rightful holder received.

Tokens are 80 bits in lower-case base32 (16 characters from ``a-z2-7``): some
mail servers lower-case the local part of an address, so the alphabet must
survive that. Two kinds:

- random tokens (``new_token``), of which the database keeps only a hash
  (``token_hash``): subscription confirmations;
- signed tokens (``Signer``): an HMAC under the network's token key of what the
  token stands for (an approval item, a follow-up right of one coordinator on
  one alert, a delivery's return path). They need no storage, can be derived
  again for a reminder, and cannot be forged without the key.

The key comes from ``approval.token_key_env`` or ``token_key_file``, never from
the database; without one, binrelay makes one itself (``approval.token_key_auto``):
32 random bytes in a 0600 file next to the SQLite database, or in the
service's state directory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from relay.config import Config, ConfigError

TOKEN_BYTES = 10  # 80 bits
TOKEN_PATTERN = re.compile(r"^[a-z2-7]{16}$")


def new_token() -> str:
    return base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode("ascii").lower()


def token_hash(token: str) -> str:
    """What the database keeps of a random token: the SHA-256 of the normalised token."""
    return hashlib.sha256(token.strip().lower().encode("ascii", "replace")).hexdigest()


def looks_like_token(value: str) -> bool:
    return bool(TOKEN_PATTERN.match(value.strip().lower()))


class Signer:
    """Signed tokens under one key: ``sign(purpose, *parts)``, ``verify(token, purpose, *parts)``."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a signer needs a key")
        self._key = key

    def sign(self, purpose: str, *parts: object) -> str:
        message = ":".join(["binrelay", purpose, *(str(part) for part in parts)]).encode("utf-8", "replace")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.b32encode(digest[:TOKEN_BYTES]).decode("ascii").lower()

    def verify(self, token: str, purpose: str, *parts: object) -> bool:
        """In constant time: does ``token`` stand for exactly (purpose, parts)?"""
        return hmac.compare_digest(token.strip().lower(), self.sign(purpose, *parts))


def signer_for(config: Config) -> Signer:
    """The network's signer; a configuration error when there is no key at all."""
    key = token_key(config)
    if key is None:
        raise ConfigError(config.source_path or "<config>", "approval.token_key_env",
                          "no token key: set token_key_env or token_key_file, or token_key_auto = true")
    return Signer(key)


def token_key(config: Config) -> bytes | None:
    """The configured HMAC key, or the generated one, or None (read at each call: a rotated file counts)."""
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
