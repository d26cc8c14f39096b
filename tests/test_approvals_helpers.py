"""Shared set-up for the approval tests: a configured runtime, stored messages, the outbox."""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from mail.message import parse_mail
from relay.approvals.answers import handle_reply
from relay.approvals.requests import hold
from relay.config import Config, parse_config
from relay.service.clock import FrozenClock
from relay.service.runtime import Runtime
from rules.sender import identify
from storage.db import make_engine, migrate
from storage.models import AuditEvent, ClassificationRecord, Delivery, Member, Message, QueueItem
from tests import mailgen

NETWORK = "bin@example.org"
TEST_KEY_ENV = "BINRELAY_TEST_TOKEN_KEY"  # set for every test by tests/fixtures/common.py
ANNA, BERT, CARLA, KEES = "anna@example.org", "bert@example.org", "carla@example.org", "kees@example.org"
MEMBER = "jan.devries@example.net"
TOKEN_IN_SUBJECT = re.compile(r"\[BIN-([a-z2-7]{16})\]")


def config_dict(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "network": {"name": "BIN Test", "address": NETWORK, "coordinators": [KEES]},
        "imap": {"host": "127.0.0.1", "username": NETWORK, "password_env": "X_IMAP"},
        "smtp": {"host": "127.0.0.1"},
        "wards": [
            {"slug": "maaspoort", "name": "Maaspoort", "streets": ["Marathonloop"], "coordinators": [ANNA, BERT]},
            {"slug": "empel", "name": "Empel", "coordinators": [CARLA]},
            {"slug": "binnenstad", "name": "Binnenstad", "coordinators": []},
        ],
        "partners": [
            {"kind": "police", "name": "Politie Oost-Brabant", "domains": ["politie.nl"],
             "forward_to": "wijkagent@politie.nl"},
            {"kind": "municipality", "name": "Gemeente 's-Hertogenbosch", "domains": ["s-hertogenbosch.nl"]},
        ],
        # Many tests hold look-alike reports on purpose: no merging here (see test_merging.py).
        "approval": {"token_key_env": TEST_KEY_ENV, "token_key_auto": False,
                     "merge_window_minutes": 0},
    }
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}
    return data


def approval_config(**overrides: Any) -> Config:
    """The approval tests' network (see ``config_dict``); runtimes come from ``build_runtime``."""
    return parse_config(config_dict(**overrides))


@dataclass
class Stored:
    message_id: int


def store(
    rt: Runtime,
    session: Session,
    raw: bytes,
    *,
    source: str = "member",
    kind: str = "report",
    category: str | None = "burglary",
    wards: tuple[str, ...] = ("maaspoort",),
    urgency: str = "normal",
    command: str | None = None,
    partner: str | None = None,
    explanation: tuple[str, ...] = ("rule 'inbraak' matched 'ingebroken'",),
) -> Message:
    """A message as ingest stored it, with the rules' decision next to it."""
    now = rt.clock.now()
    mail = parse_mail(raw)
    identity = identify(mail, rt.classifier.directory.trust)  # the one sender identity, as the pipeline stores it
    message = Message(
        dedup_key=hashlib.sha256(raw).hexdigest(), message_id=mail.message_id, origin="test", received_at=now,
        size=len(raw), raw=raw, from_address=identity.address, subject=mail.subject, body_text=mail.text,
        status="new",
    )
    message.classification = ClassificationRecord(
        source=source, kind=kind, command=command, category=category, wards=list(wards), urgency=urgency,
        explanation=list(explanation), partner_name=partner, created_at=now,
        sender_assurance=identity.assurance, sender_notes=list(identity.reasons),
    )
    session.add(message)
    session.flush()
    return message


def report(subject: str = "Ingebroken in schuur", body: str = "Vannacht is er ingebroken in mijn schuur.",
           sender: str = f"Jan de Vries <{MEMBER}>", **headers: str) -> bytes:
    ident = hashlib.sha1((subject + body + sender).encode()).hexdigest()
    return mailgen.message(subject, body, sender=sender, message_id=f"{ident}@example.net", headers=headers or None)


def hold_message(rt: Runtime, raw: bytes, **fields: Any) -> int:
    """Store and hold a message in one transaction; returns the queue item id."""
    with rt.sessions() as session, session.begin():
        message = store(rt, session, raw, **fields)
        cls = message.classification
        assert cls is not None
        item = hold(rt, session, message, parse_mail(raw), cls)
        return item.id


def reply(rt: Runtime, *, sender: str, token: str | None, body: str = "AKKOORD", subject: str | None = None,
          headers: dict[str, str] | None = None, to: str | None = None) -> int:
    """Feed a coordinator's reply through handle_reply in one transaction; returns its message id."""
    subject = subject if subject is not None else f"Re: [BIN-{token}] Inbraak Maaspoort: Ingebroken in schuur"
    to = to or (f"bin+{token}@example.org" if token else NETWORK)
    ident = hashlib.sha1(f"{sender}{subject}{body}{rt.clock.now()}{headers}".encode()).hexdigest()
    raw = mailgen.message(subject, body, sender=sender, to=to, message_id=f"{ident}@example.org", headers=headers)
    with rt.sessions() as session, session.begin():
        message = store(rt, session, raw, source="coordinator", kind="command", command="decision",
                        category=None, wards=())
        cls = message.classification
        assert cls is not None
        handle_reply(rt, session, message, parse_mail(raw), cls)
        return message.id


@dataclass
class Sent:
    recipient: str
    purpose: str
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())

    @property
    def token(self) -> str | None:
        match = TOKEN_IN_SUBJECT.search(self.subject)
        return match.group(1) if match else None


def outbox(sessions: sessionmaker[Session], purpose: str | None = None) -> list[Sent]:
    with sessions() as session:
        query = select(Delivery).order_by(Delivery.id)
        if purpose is not None:
            query = query.where(Delivery.purpose == purpose)
        rows = list(session.scalars(query))
    found = []
    for row in rows:
        parsed = email.message_from_bytes(row.raw or b"", policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        found.append(Sent(row.recipient, row.purpose, parsed))
    return found


def item(sessions: sessionmaker[Session], item_id: int) -> QueueItem:
    with sessions() as session:
        row = session.get(QueueItem, item_id)
        assert row is not None
        session.expunge(row)
        return row


def audit_actions(sessions: sessionmaker[Session]) -> list[tuple[str, str, dict[str, Any]]]:
    with sessions() as session:
        return [(e.actor, e.action, dict(e.detail)) for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


def token_of(sessions: sessionmaker[Session], recipient: str = ANNA, purpose: str = "approval_request") -> str:
    tokens = [sent.token for sent in outbox(sessions, purpose) if sent.recipient == recipient]
    assert tokens and tokens[-1] is not None, f"no {purpose} to {recipient}"
    return tokens[-1]


def write_key(tmp_path: Path) -> Path:
    path = tmp_path / "token.key"
    path.write_text("a secret key for tests only\n", encoding="utf-8")
    return path


def at(clock: FrozenClock) -> datetime:
    return clock.now()


@pytest.fixture
def any_engine(db_url: str) -> Iterator[Engine]:
    """A migrated database on each backend (SQLite, PostgreSQL); import it into a test module to use it."""
    engine = make_engine(db_url)
    migrate(engine)
    yield engine
    engine.dispose()


def add_members(rt: Runtime, rows: list[tuple[str, str]]) -> None:
    """Active members: (address, ward slug)."""
    with rt.sessions() as session, session.begin():
        for address, ward in rows:
            token = hashlib.sha1(address.encode()).hexdigest()[:16]
            session.add(Member(email=address, ward=ward, status="active", unsubscribe_token=token,
                               joined_at=rt.clock.now()))


def run_in_threads(targets: list[Callable[[], None]], timeout: float = 60) -> None:
    """Run every target in its own thread; fail with whatever any of them raised."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish in time"
    assert not errors, errors
