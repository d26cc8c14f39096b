"""Hosted mailboxes: folders under the server's personal namespace, and servers whose IDLE is lazy."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from relay.cli.checks import run_checks
from relay.config import parse_config
from relay.devservers.dovecot import PrivateDovecot
from relay.ingest.imap import ImapSource
from relay.ingest.store import Ingestor
from relay.service.backoff import Backoff
from relay.service.clock import FrozenClock
from tests.faults.lazy_idle import LazyIdleProxy
from tests.fixtures.dovecot import AccountFactory, ImapAccount, started_or_skip
from tests.mailgen import varied_messages

pytestmark = pytest.mark.dovecot


@pytest.fixture(scope="module")
def courier_like() -> Iterator[PrivateDovecot]:
    """Every personal folder under "INBOX." with "." as separator, as Courier and Debian's Cyrus have it."""
    server = started_or_skip(PrivateDovecot(inbox_prefix="INBOX."))
    yield server
    server.remove()


def source_for(account: ImapAccount, sessions: sessionmaker[Session], clock: FrozenClock) -> ImapSource:
    ingestor = Ingestor(sessions, clock, 10 * 1024 * 1024)
    return ImapSource(account.config, ingestor, sessions, clock, backoff=Backoff(base=0.05, cap=0.5))


def folders(account: ImapAccount) -> dict[str, int]:
    client = account.server.client(account.username)
    try:
        return {name: int(client.select_folder(name, readonly=True)[b"EXISTS"])
                for _flags, _separator, name in client.list_folders()}
    finally:
        client.logout()


def test_the_processed_folder_goes_inside_the_personal_namespace(
        courier_like: PrivateDovecot, make_imap_account: AccountFactory, sessions: sessionmaker[Session],
        clock: FrozenClock) -> None:
    account = make_imap_account(courier_like, processed_folder="Verwerkt")
    courier_like.deliver_many(account.username, varied_messages(3, seed=41))
    source = source_for(account, sessions, clock)
    assert source.run_once() == 3
    assert source.last_error is None
    assert folders(account) == {"INBOX": 0, "INBOX.Verwerkt": 3}
    source.close()


def test_check_says_which_processed_folder_it_will_use(
        courier_like: PrivateDovecot, make_imap_account: AccountFactory, tmp_path: Path) -> None:
    account = make_imap_account(courier_like, processed_folder="Verwerkt")
    config = parse_config({
        "network": {"name": "BIN Test", "address": "bin@example.org"},
        "imap": account.config.model_dump(mode="json", exclude_none=True),
        "smtp": {"host": "127.0.0.1", "port": 9, "starttls": False},
        "database": {"url": f"sqlite:///{tmp_path / 'binrelay.db'}"},
        "wards": [{"slug": "maaspoort", "name": "Maaspoort", "postcodes": ["5221"]}],
    }, tmp_path / "binrelay.toml")
    out = io.StringIO()
    run_checks(config, out)
    imap_line = next(line for line in out.getvalue().splitlines() if line.startswith("ok   imap:"))
    assert "processed folder 'INBOX.Verwerkt' created, inside the server's personal namespace" in imap_line
    assert folders(account) == {"INBOX": 0, "INBOX.Verwerkt": 0}  # as the service's first pass would
    out = io.StringIO()
    run_checks(config, out)  # the second time it is there
    assert "processed folder 'INBOX.Verwerkt' exists" in out.getvalue()


def test_new_mail_is_noticed_within_seconds_when_idle_never_announces_it(
        dovecot_server: PrivateDovecot, make_imap_account: AccountFactory, sessions: sessionmaker[Session],
        clock: FrozenClock) -> None:
    assert dovecot_server.port is not None
    with LazyIdleProxy(dovecot_server.host, dovecot_server.port) as proxy:
        account = make_imap_account(dovecot_server, port=proxy.port)  # the default re-check
        source = source_for(account, sessions, clock)
        source.run_once()
        raw = varied_messages(1, seed=42)[0]
        threading.Timer(0.5, dovecot_server.deliver, args=(account.username, raw)).start()
        started = time.monotonic()
        source.wait_for_mail(60.0, threading.Event())
        waited = time.monotonic() - started
        assert source.run_once() == 1
        assert waited < 5.0, f"noticed after {waited:.1f} s"
        assert proxy.dropped >= 1  # the server did announce it; the proxy made it lazy
        source.close()
