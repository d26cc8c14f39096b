"""Store raw incoming mail, once, before it leaves the mailbox.

``Ingestor.store`` commits the raw bytes in a transaction of its own with
status ``new``; the pipeline parses, classifies and routes later. The
deduplication key is sha256(Message-ID + raw bytes): a message fetched again
after a crash, a UIDVALIDITY change or by a second process is recognised and
not stored twice (the unique constraint decides a race between processes).
Only the header is parsed here, so ingest stays cheap. An oversized message is
stored whole and flagged in ``error``; its status stays ``new`` and the
pipeline holds it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.header import decode_header, make_header
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from relay.service.clock import Clock
from rules.sender import single_address
from storage.messages import insert_message, insert_messages, message_id_by_dedup_key

log = logging.getLogger("binrelay.ingest")

_HEADER_END = re.compile(rb"\r?\n\r?\n")
MAX_HEADER_BYTES = 256 * 1024  # a header block larger than this is not parsed further


@dataclass(frozen=True)
class StoreResult:
    stored: bool  # False: an identical message was already stored
    message_id: int  # the database id (of the earlier copy for a duplicate)


@dataclass(frozen=True)
class HeaderFields:
    message_id: str | None
    from_address: str | None
    subject: str | None


def dedup_key(message_id: str | None, raw: bytes) -> str:
    digest = hashlib.sha256()
    digest.update((message_id or "").encode("utf-8", "surrogateescape"))
    digest.update(b"\0")
    digest.update(raw)
    return digest.hexdigest()


def header_block(raw: bytes) -> bytes:
    match = _HEADER_END.search(raw, 0, MAX_HEADER_BYTES)
    return raw[: match.end()] if match else raw[:MAX_HEADER_BYTES]


def header_fields(raw: bytes) -> HeaderFields:
    """Message-ID, sender address and subject from the header alone; never raises.

    A plain scan of the unfolded header lines: the full email parser costs more
    than everything else ingest does, and the pipeline parses properly later.
    """
    wanted: dict[str, str] = {}
    senders = 0
    for name, value in _header_lines(header_block(raw)):
        senders += name == "from"
        if name in _WANTED and name not in wanted:
            wanted[name] = value
    message_id = _clean(wanted.get("message-id"), 998)
    # The same strict reading as the rules' sender identity (which the pipeline sets authoritatively).
    address = single_address(wanted["from"], "From")[0] if senders == 1 else None
    return HeaderFields(message_id, address[:320] if address else None, _decoded_subject(wanted.get("subject")))


_WANTED = frozenset({"message-id", "from", "subject"})


def _header_lines(block: bytes) -> Iterator[tuple[str, str]]:
    """(lower-case name, unfolded value) per header field."""
    name: str | None = None
    parts: list[str] = []
    for line in block.decode("utf-8", "surrogateescape").splitlines():
        if line[:1] in (" ", "\t") and name is not None:
            parts.append(line)
            continue
        if name is not None:
            yield name, " ".join(part.strip() for part in parts)
        field, colon, value = line.partition(":")
        name, parts = (field.strip().lower(), [value]) if colon and field.strip() else (None, [])
    if name is not None:
        yield name, " ".join(part.strip() for part in parts)


def _clean(value: object, limit: int) -> str | None:
    if value is None:
        return None
    text = str(value).encode("utf-8", "replace").decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:limit] or None


def _decoded_subject(value: object) -> str | None:
    if value is None:
        return None
    try:
        text = str(make_header(decode_header(str(value))))
    except Exception:  # noqa: BLE001 - undecodable encoded-words: keep the raw text
        text = str(value)
    return _clean(text, 2000)


class Ingestor:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, max_bytes: int) -> None:
        self.sessions = sessions
        self.clock = clock
        self.max_bytes = max_bytes

    def store(self, raw: bytes, *, origin: str, origin_ref: str | None) -> StoreResult:
        """Commit ``raw`` (status ``new``) unless an identical message is already stored.

        The INSERT is tried first: duplicates are rare (a crash, a UIDVALIDITY
        change), and the unique constraint also settles a race between processes.
        """
        fields = header_fields(raw)
        key = dedup_key(fields.message_id, raw)
        with self.sessions() as session:
            try:
                new_id = insert_message(session, **self._row(raw, key, fields, origin, origin_ref))
                session.commit()
            except IntegrityError:
                session.rollback()
                existing = message_id_by_dedup_key(session, key)
                if existing is None:
                    raise
                return StoreResult(False, existing)
        log.debug("stored message %s from %s (%d bytes)", new_id, origin, len(raw))
        return StoreResult(True, new_id)

    def store_many(self, items: list[tuple[bytes, str | None]], *, origin: str) -> list[StoreResult]:
        """Commit several messages in one transaction and, usually, one INSERT.

        Nothing is committed, and so nothing may leave the inbox, until all are.
        When the group holds a duplicate (after a crash or a UIDVALIDITY
        change), it is stored again one by one, each in a savepoint.
        """
        rows = [self._prepared(raw, origin, origin_ref) for raw, origin_ref in items]
        with self.sessions() as session:
            try:
                ids = insert_messages(session, rows)
                session.commit()
                return [StoreResult(True, new_id) for new_id in ids]
            except IntegrityError:
                session.rollback()
            results = [self._insert_or_find(session, row) for row in rows]
            session.commit()
        return results

    def _prepared(self, raw: bytes, origin: str, origin_ref: str | None) -> dict[str, Any]:
        fields = header_fields(raw)
        return self._row(raw, dedup_key(fields.message_id, raw), fields, origin, origin_ref)

    def _insert_or_find(self, session: Session, row: dict[str, Any]) -> StoreResult:
        try:
            with session.begin_nested():
                return StoreResult(True, insert_message(session, **row))
        except IntegrityError:
            existing = message_id_by_dedup_key(session, row["dedup_key"])
            if existing is None:
                raise
            return StoreResult(False, existing)

    def _row(
        self, raw: bytes, key: str, fields: HeaderFields, origin: str, origin_ref: str | None
    ) -> dict[str, object]:
        error = None
        if len(raw) > self.max_bytes:
            error = f"oversize: {len(raw)} bytes > limit {self.max_bytes}"
            log.warning("message from %s is oversized (%d bytes); stored whole, to be held", origin, len(raw))
        return {
            "dedup_key": key,
            "message_id": fields.message_id,
            "origin": origin[:200],
            "origin_ref": origin_ref[:200] if origin_ref else None,
            "received_at": self.clock.now(),
            "size": len(raw),
            "raw": raw,
            "from_address": fields.from_address,
            "subject": fields.subject,
            "status": "new",
            "error": error,
        }
