"""The IMAP source against a real Dovecot: nothing lost, nothing stored twice."""

from __future__ import annotations

import logging
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from relay.devservers.dovecot import PrivateDovecot
from relay.ingest.imap import ImapSource
from relay.ingest.store import Ingestor
from relay.service.backoff import Backoff
from relay.service.clock import FrozenClock, SystemClock
from storage.db import make_engine, migrate, session_factory
from storage.messages import save_mailbox_state
from storage.models import Message
from tests.faults.proxy import FaultyProxy
from tests.fixtures.dovecot import AccountFactory, ImapAccount
from tests.mailgen import varied_messages

pytestmark = pytest.mark.dovecot

PROCESSED = "Verwerkt"
ROOT = Path(__file__).resolve().parent.parent


def make_source(account: ImapAccount, sessions: sessionmaker[Session], clock: FrozenClock | SystemClock) -> ImapSource:
    ingestor = Ingestor(sessions, clock, 10 * 1024 * 1024)
    return ImapSource(account.config, ingestor, sessions, clock, backoff=Backoff(base=0.05, cap=0.5))


def stored_raws(sessions: sessionmaker[Session]) -> list[bytes]:
    with sessions() as session:
        return [raw or b"" for raw in session.scalars(select(Message.raw).order_by(Message.id))]


def folder_count(account: ImapAccount, folder: str = "INBOX") -> int:
    client = account.server.client(account.username)
    try:
        if not client.folder_exists(folder):
            return 0
        return int(client.select_folder(folder, readonly=True)[b"EXISTS"])
    finally:
        client.logout()


def ingest_until(source: ImapSource, done: Callable[[], bool], seconds: float = 30.0) -> None:
    """Run the daemon's loop (pass, wait) until ``done()`` or the deadline."""
    wake = threading.Event()
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, (
            f"ingest did not finish in time (last uid {source._last_uid}, last error {source.last_error})"
        )
        source.run_once()
        source.wait_for_mail(0.2, wake)


def crlf(raw: bytes) -> bytes:
    """IMAP servers hand out CRLF line ends (mailgen folds some headers with a bare LF)."""
    return re.sub(rb"\r?\n", b"\r\n", raw)


def assert_exactly_once(sessions: sessionmaker[Session], delivered: list[bytes]) -> None:
    raws = stored_raws(sessions)
    assert len(raws) == len(set(raws)), "a message was stored twice"
    expected = sorted(crlf(raw) for raw in delivered)
    assert sorted(raws) == expected, "stored messages differ from what was delivered"


def test_500_messages_are_stored_once_and_moved(
    imap_account: ImapAccount, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    delivered = varied_messages(500, seed=1)
    imap_account.server.deliver_many(imap_account.username, delivered)
    source = make_source(imap_account, sessions, clock)
    assert source.run_once() == 500
    assert_exactly_once(sessions, delivered)
    assert folder_count(imap_account) == 0
    assert folder_count(imap_account, PROCESSED) == 500
    assert source.run_once() == 0
    source.close()


def test_messages_arriving_later_are_fetched_by_uid(
    imap_account: ImapAccount, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    first, later = varied_messages(30, seed=2)[:10], varied_messages(30, seed=2)[10:]
    imap_account.server.deliver_many(imap_account.username, first)
    source = make_source(imap_account, sessions, clock)
    assert source.run_once() == 10
    imap_account.server.deliver_many(imap_account.username, later)
    assert source.run_once() == 20
    assert_exactly_once(sessions, first + later)
    source.close()


def test_crash_between_commit_and_move_moves_without_storing_twice(
    imap_account: ImapAccount, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    delivered = varied_messages(12, seed=3)
    server = imap_account.server
    server.deliver_many(imap_account.username, delivered)
    # What a crash right after the commit leaves behind: rows and state saved, mail still in the inbox.
    ingestor = Ingestor(sessions, clock, 10**7)
    for raw in delivered:
        ingestor.store(raw, origin="imap:INBOX", origin_ref=None)
    client = server.client(imap_account.username)
    uidvalidity = int(client.select_folder("INBOX", readonly=True)[b"UIDVALIDITY"])
    client.logout()
    source = make_source(imap_account, sessions, clock)
    with sessions() as session, session.begin():
        save_mailbox_state(session, source.name, uidvalidity=uidvalidity, last_uid=12, now=clock.now())
    assert source.run_once() == 0
    assert folder_count(imap_account) == 0
    assert folder_count(imap_account, PROCESSED) == 12
    assert_exactly_once(sessions, delivered)


def test_mail_left_below_the_last_uid_is_taken_in_the_next_pass_of_a_live_connection(
    imap_account: ImapAccount, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    """Whatever left mail behind below the last UID, the next pass (not only a reconnect) takes it."""
    first, later = varied_messages(8, seed=21)[:3], varied_messages(8, seed=21)[3:]
    server = imap_account.server
    server.deliver_many(imap_account.username, first)
    source = make_source(imap_account, sessions, clock)
    assert source.run_once() == 3
    assert source.run_once() == 0  # a quiet pass on the same connection
    server.deliver_many(imap_account.username, later)
    # As if those UIDs had been handled without leaving the inbox (a move that did not happen).
    source._last_uid += 100
    assert source.run_once() == 5
    assert folder_count(imap_account) == 0
    assert_exactly_once(sessions, first + later)
    source.close()


def test_uidvalidity_change_rereads_without_duplicates(
    own_dovecot: PrivateDovecot, make_imap_account: AccountFactory, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    account = make_imap_account(own_dovecot)
    old = varied_messages(13, seed=4)[:10]
    new = varied_messages(13, seed=4)[10:]
    own_dovecot.deliver_many(account.username, old)
    source = make_source(account, sessions, clock)
    assert source.run_once() == 10
    source.close()
    # A restored mailbox: the processed mail is back in the inbox, the UID list is gone.
    own_dovecot.stop()
    inbox = own_dovecot.maildir(account.username)
    processed = own_dovecot.maildir(account.username, PROCESSED)
    for path in [*(processed / "cur").iterdir(), *(processed / "new").iterdir()]:
        path.rename(inbox / "cur" / path.name)
    for path in inbox.glob("dovecot*"):
        path.unlink()
    own_dovecot.start()
    own_dovecot.deliver_many(account.username, new)
    client = own_dovecot.client(account.username)
    uids = client.select_folder("INBOX", readonly=True)
    client.logout()
    assert uids[b"EXISTS"] == 13 and uids[b"UIDNEXT"] == 14  # UIDs 1..13 again
    source = make_source(account, sessions, clock)
    assert source.run_once() == 3
    assert_exactly_once(sessions, old + new)
    assert folder_count(account) == 0


def test_server_killed_during_fetch_recovers_by_itself(
    own_dovecot: PrivateDovecot,
    make_imap_account: AccountFactory,
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = make_imap_account(own_dovecot, fetch_batch=20)
    delivered = varied_messages(600, seed=5)
    own_dovecot.deliver_many(account.username, delivered)
    source = make_source(account, sessions, SystemClock())
    caplog.set_level(logging.WARNING, logger="binrelay.ingest.imap")
    worker = threading.Thread(target=ingest_until, args=(source, lambda: len(stored_raws(sessions)) >= 600))
    worker.start()
    deadline = time.monotonic() + 20
    while len(stored_raws(sessions)) < 60 and time.monotonic() < deadline:
        time.sleep(0.005)
    own_dovecot.kill()
    time.sleep(0.3)
    own_dovecot.start()
    time.sleep(0.2)
    own_dovecot.restart()
    worker.join(timeout=40)
    assert not worker.is_alive()
    assert "retrying" in caplog.text, "the server loss was not noticed"
    assert_exactly_once(sessions, delivered)
    ingest_until(source, lambda: folder_count(account) == 0, 10)
    source.close()


@pytest.mark.parametrize("crash", ["restart", "kill"])
def test_server_lost_during_idle_recovers_by_itself(
    crash: str,
    own_dovecot: PrivateDovecot,
    make_imap_account: AccountFactory,
    sessions: sessionmaker[Session],
    clock: FrozenClock,
) -> None:
    account = make_imap_account(own_dovecot)
    source = make_source(account, sessions, clock)
    assert source.run_once() == 0
    crasher = threading.Timer(0.3, own_dovecot.restart if crash == "restart" else own_dovecot.kill)
    crasher.start()
    started = time.monotonic()
    source.wait_for_mail(10.0, threading.Event())
    assert time.monotonic() - started < 5.0, "IDLE did not notice the lost server"
    crasher.join(timeout=20)
    if crash == "kill":
        own_dovecot.start()
    delivered = varied_messages(3, seed=6)
    own_dovecot.deliver_many(account.username, delivered)
    ingest_until(source, lambda: len(stored_raws(sessions)) == 3, 15)
    assert_exactly_once(sessions, delivered)
    source.close()


def test_idle_wakes_within_two_seconds_of_new_mail(
    imap_account: ImapAccount, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    source = make_source(imap_account, sessions, clock)
    source.run_once()
    raw = varied_messages(1, seed=7)[0]
    threading.Timer(0.5, imap_account.server.deliver, args=(imap_account.username, raw)).start()
    started = time.monotonic()
    source.wait_for_mail(20.0, threading.Event())
    assert 0.4 < time.monotonic() - started < 2.5
    assert source.run_once() == 1
    source.close()


def test_wake_event_ends_idle_at_once(
    imap_account: ImapAccount, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    source = make_source(imap_account, sessions, clock)
    source.run_once()
    wake = threading.Event()
    threading.Timer(0.3, wake.set).start()
    started = time.monotonic()
    source.wait_for_mail(20.0, wake)
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    source.wait_for_mail(0.5, threading.Event())  # nothing arrives: the timeout bounds it
    assert 0.4 < time.monotonic() - started < 1.5
    assert source.run_once() == 0  # the connection is still usable after IDLE
    source.close()


def test_polling_and_copy_expunge_without_idle_and_move(
    dovecot_plain_server: PrivateDovecot,
    make_imap_account: AccountFactory,
    sessions: sessionmaker[Session],
    clock: FrozenClock,
) -> None:
    account = make_imap_account(dovecot_plain_server, poll_seconds=1)
    delivered = varied_messages(50, seed=8)
    dovecot_plain_server.deliver_many(account.username, delivered)
    source = make_source(account, sessions, clock)
    assert source.run_once() == 50
    assert folder_count(account) == 0
    assert folder_count(account, PROCESSED) == 50
    started = time.monotonic()
    source.wait_for_mail(10.0, threading.Event())  # polls: waits poll_seconds
    assert 0.9 < time.monotonic() - started < 2.0
    extra = varied_messages(51, seed=8)[50:]
    dovecot_plain_server.deliver_many(account.username, extra)
    assert source.run_once() == 1
    assert_exactly_once(sessions, delivered + extra)
    source.close()


def test_slow_and_cutting_proxy_loses_nothing(
    imap_account: ImapAccount,
    make_imap_account: AccountFactory,
    sessions: sessionmaker[Session],
    clock: FrozenClock,
) -> None:
    delivered = varied_messages(200, seed=9)
    server = imap_account.server
    server.deliver_many(imap_account.username, delivered)
    assert server.port is not None
    with FaultyProxy(server.host, server.port, delay=0.0005, chunk=2048) as proxy:
        config = imap_account.config.model_copy(update={"port": proxy.port, "fetch_batch": 25})
        account = ImapAccount(server, imap_account.username, imap_account.password, config)
        source = make_source(account, sessions, clock)
        rng = random.Random(9)
        for cut in range(1, 4):
            proxy.cut_after(rng.randint(20_000, 100_000))
            ingest_until(source, lambda: proxy.cuts >= cut, 20)  # noqa: B023 - used at once
        ingest_until(source, lambda: folder_count(account) == 0, 40)
        assert proxy.connections >= 4
    assert_exactly_once(sessions, delivered)
    source.close()


@pytest.mark.slow
def test_sigkill_of_the_ingesting_process_loses_nothing(
    own_dovecot: PrivateDovecot, make_imap_account: AccountFactory, tmp_path: Path, clock: FrozenClock
) -> None:
    account = make_imap_account(own_dovecot, fetch_batch=5)
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    delivered = varied_messages(500, seed=10)
    rng = random.Random(10)
    assert account.config.password_file is not None
    args = [
        sys.executable, "-m", "tests.faults.ingest_worker", db_url, own_dovecot.host,
        str(own_dovecot.port), account.username, str(account.config.password_file), "5",
    ]  # fmt: skip
    chunks = [delivered[i : i + 25] for i in range(0, 500, 25)]
    interrupted = 0  # kills that landed while the worker had stored part of its mail
    for chunk in chunks:
        own_dovecot.deliver_many(account.username, chunk)
        before = len(stored_raws(sessions))
        worker = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert worker.stdout is not None and worker.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 0.15))
        finally:
            worker.kill()
            worker.wait(timeout=10)
            assert worker.stdout is not None
            worker.stdout.close()
        if len(stored_raws(sessions)) > before and folder_count(account) > 0:
            interrupted += 1
    assert interrupted >= 3, f"only {interrupted} of 20 kills hit the worker mid-ingest"
    source = make_source(account, sessions, clock)
    ingest_until(source, lambda: folder_count(account) == 0, 30)
    source.close()
    assert_exactly_once(sessions, delivered)
    engine.dispose()


def test_wrong_password_is_logged_and_retried_not_raised(
    imap_account: ImapAccount,
    sessions: sessionmaker[Session],
    clock: FrozenClock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password")
    account = ImapAccount(
        imap_account.server, imap_account.username, "x",
        imap_account.config.model_copy(update={"password_file": wrong}),
    )
    source = make_source(account, sessions, clock)
    assert source.run_once() == 0
    assert "retrying" in caplog.text
    assert "not-the-password" not in caplog.text
    started = time.monotonic()
    source.wait_for_mail(5.0, threading.Event())  # sleeps the backoff, not the whole timeout
    assert time.monotonic() - started < 1.0


def test_idle_is_renewed_and_still_hears_new_mail(
    imap_account: ImapAccount, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    # model_copy skips validation: renew every second instead of at least every 10.
    config = imap_account.config.model_copy(update={"idle_renew_seconds": 1})
    account = ImapAccount(imap_account.server, imap_account.username, imap_account.password, config)
    source = make_source(account, sessions, clock)
    source.run_once()
    raw = varied_messages(1, seed=11)[0]
    threading.Timer(2.5, imap_account.server.deliver, args=(imap_account.username, raw)).start()
    started = time.monotonic()
    source.wait_for_mail(10.0, threading.Event())  # two renewals, then the mail
    assert 2.4 < time.monotonic() - started < 6.0  # well before the 10 s timeout
    assert source.run_once() == 1
    source.close()


@pytest.fixture
def any_sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    migrate(engine)
    yield session_factory(engine)
    engine.dispose()


def test_two_sources_on_one_mailbox_store_each_message_once(
    imap_account: ImapAccount, any_sessions: sessionmaker[Session]
) -> None:
    """Two daemons by mistake on one mailbox (SQLite and PostgreSQL): still once each."""
    delivered = varied_messages(300, seed=12)
    imap_account.server.deliver_many(imap_account.username, delivered)
    config = imap_account.config.model_copy(update={"fetch_batch": 10})
    account = ImapAccount(imap_account.server, imap_account.username, imap_account.password, config)
    sources = [make_source(account, any_sessions, SystemClock()) for _ in range(2)]
    workers = [
        threading.Thread(target=ingest_until, args=(source, lambda: folder_count(account) == 0, 40))
        for source in sources
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert_exactly_once(any_sessions, delivered)
    assert folder_count(account) == 0
    for source in sources:
        source.close()


def test_big_messages_are_fetched_in_bounded_groups_and_oversize_is_flagged(
    imap_account: ImapAccount, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    filler = ("Regel met tekst voor een groot bericht over de buurt.\r\n" * 12_000).encode()
    delivered = [
        b"Subject: groot %d\r\nMessage-ID: <groot-%d@example.net>\r\n\r\n" % (n, n) + filler
        for n in range(6)
    ]
    imap_account.server.deliver_many(imap_account.username, delivered)
    limit = len(filler) - 1  # every message is over the ingest limit
    ingestor = Ingestor(sessions, clock, limit)
    source = ImapSource(
        imap_account.config, ingestor, sessions, clock,
        backoff=Backoff(base=0.05, cap=0.5), max_fetch_bytes=1_000_000,
    )
    assert source.run_once() == 6
    assert_exactly_once(sessions, delivered)
    with sessions() as session:
        rows = list(session.scalars(select(Message)))
    assert all(row.status == "new" and (row.error or "").startswith("oversize") for row in rows)
    assert folder_count(imap_account) == 0
    source.close()


def test_processed_folder_equal_to_the_inbox_is_refused(
    imap_account: ImapAccount, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    config = imap_account.config.model_copy(update={"processed_folder": "INBOX"})
    account = ImapAccount(imap_account.server, imap_account.username, imap_account.password, config)
    with pytest.raises(ValueError, match="processed_folder"):
        make_source(account, sessions, clock)


def test_a_flood_ends_the_pass_and_the_wait_returns_at_once(
    imap_account: ImapAccount, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    """Mail arriving during every search round: run_once returns, wait_for_mail does not IDLE."""
    server, user = imap_account.server, imap_account.username
    server.deliver_many(user, varied_messages(5, seed=13))
    stop = threading.Event()

    def flood() -> None:
        for raw in varied_messages(400, seed=14):
            if stop.is_set():
                return
            server.deliver(user, raw)

    flooder = threading.Thread(target=flood)
    flooder.start()
    config = imap_account.config.model_copy(update={"fetch_batch": 1})
    account = ImapAccount(server, user, imap_account.password, config)
    source = make_source(account, sessions, clock)
    try:
        deadline = time.monotonic() + 20
        while not source._backlog and time.monotonic() < deadline and flooder.is_alive():
            source.run_once()
        if source._backlog:
            started = time.monotonic()
            source.wait_for_mail(10.0, threading.Event())
            assert time.monotonic() - started < 2.0  # at once, not the 10 s of an IDLE (room for a loaded machine)
    finally:
        stop.set()
        flooder.join(timeout=30)
    ingest_until(source, lambda: folder_count(account) == 0, 120)
    raws = stored_raws(sessions)
    assert len(raws) == len(set(raws))
    source.close()
