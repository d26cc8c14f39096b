"""relay.service.connections.imap_client over implicit TLS and STARTTLS, certificates verified."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from relay.config import ImapConfig
from relay.devservers.dovecot import PrivateDovecot
from relay.ingest.imap import ImapSource
from relay.ingest.store import Ingestor
from relay.service.backoff import Backoff
from relay.service.clock import FrozenClock
from relay.service.connections import imap_client
from storage.models import Message
from tests.fixtures.dovecot import started_or_skip
from tests.mailgen import varied_messages

pytestmark = pytest.mark.dovecot
USER = "tls@example.org"


@pytest.fixture
def tls_dovecot() -> Iterator[PrivateDovecot]:
    server = started_or_skip(PrivateDovecot(tls=True))
    server.add_user(USER)
    yield server
    server.remove()


@pytest.fixture
def trusted(tls_dovecot: PrivateDovecot, monkeypatch: pytest.MonkeyPatch) -> PrivateDovecot:
    """Trust the server's self-signed certificate the way an operator would (SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_dovecot.ca_file))
    return tls_dovecot


def config(server: PrivateDovecot, tmp_path: Path, **fields: object) -> ImapConfig:
    secret = tmp_path / "password"
    secret.write_text(server.password(USER))
    base: dict[str, object] = {
        "host": "127.0.0.1", "username": USER, "password_file": secret, "timeout_seconds": 5.0,
    }
    return ImapConfig.model_validate({**base, **fields})


def test_implicit_tls_login(trusted: PrivateDovecot, tmp_path: Path) -> None:
    client = imap_client(config(trusted, tmp_path, port=trusted.tls_port, ssl=True))
    try:
        assert b"IDLE" in client.capabilities()
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        client.logout()


def test_starttls_login(trusted: PrivateDovecot, tmp_path: Path) -> None:
    client = imap_client(config(trusted, tmp_path, port=trusted.port, ssl=False, starttls=True))
    try:
        assert client._imap.sock.version() is not None  # the plain socket was upgraded
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        client.logout()


def test_untrusted_certificate_is_refused(tls_dovecot: PrivateDovecot, tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        imap_client(config(tls_dovecot, tmp_path, port=tls_dovecot.tls_port, ssl=True))


def test_source_over_tls_ingests_and_notices_a_dead_server_in_idle(
    trusted: PrivateDovecot, tmp_path: Path, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    cfg = config(trusted, tmp_path, port=trusted.tls_port, ssl=True)
    delivered = varied_messages(20, seed=31)
    trusted.deliver_many(USER, delivered)
    source = ImapSource(cfg, Ingestor(sessions, clock, 10**7), sessions, clock, backoff=Backoff(0.05, 0.5))
    assert source.run_once() == 20
    threading.Timer(0.3, trusted.kill).start()
    started = time.monotonic()
    source.wait_for_mail(10.0, threading.Event())
    assert time.monotonic() - started < 3.0, "IDLE over TLS did not notice the lost server"
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 20
    source.close()
