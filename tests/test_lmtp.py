"""The LMTP listener answers 250 only after the message is stored, 451 when it cannot be."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from relay.config import LmtpConfig
from relay.ingest.lmtp import LmtpServer, start_lmtp
from relay.ingest.store import Ingestor
from relay.service.clock import FrozenClock
from storage.models import Message
from tests.mailgen import message


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def listener(sessions: sessionmaker[Session], clock: FrozenClock) -> Iterator[LmtpServer]:
    server = start_lmtp(LmtpConfig(enabled=True, host="127.0.0.1", port=free_port()),
                        Ingestor(sessions, clock, 25 * 1024 * 1024))
    yield server
    server.stop()


def count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Message)) or 0)


def test_stored_before_250(listener: LmtpServer, sessions: sessionmaker[Session]) -> None:
    raw = message("Inbraak", "Ingebroken aan de Marathonloop.", to="bin@example.org")
    with smtplib.LMTP("127.0.0.1", listener.port) as client:
        refused = client.sendmail("jan@example.net", ["bin@example.org"], raw)
    assert refused == {}
    assert count(sessions) == 1
    with sessions() as session:
        stored = session.scalars(select(Message)).one()
        assert stored.raw is not None and stored.raw.rstrip(b"\r\n") == raw.rstrip(b"\r\n")  # LMTP ends with CRLF
        assert stored.origin == "lmtp"


def test_a_database_failure_answers_451_and_keeps_nothing_half(
    listener: LmtpServer, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session, session.begin():
        session.execute(text("ALTER TABLE messages RENAME TO messages_away"))
    raw = message("Inbraak", "Ingebroken.", to="bin@example.org")
    with smtplib.LMTP("127.0.0.1", listener.port) as client, pytest.raises(smtplib.SMTPDataError) as caught:
        client.sendmail("jan@example.net", ["bin@example.org"], raw)
    assert caught.value.smtp_code == 451
