"""The Maildir source: store every file once, then move (or delete) it, crash-safe."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from relay.config import MaildirConfig
from relay.ingest.maildir import MaildirSource
from relay.ingest.store import Ingestor
from relay.service.backoff import Backoff
from relay.service.clock import FrozenClock
from storage.db import make_engine, migrate, session_factory
from storage.models import Message
from tests.mailgen import varied_messages

ROOT = Path(__file__).resolve().parent.parent


def make_maildir(folder: Path) -> Path:
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return folder


def drop(maildir: Path, raws: list[bytes], sub: str = "new", prefix: str = "m") -> None:
    """Deliver like an MTA: write into tmp/, then rename into new/ (or cur/)."""
    for number, raw in enumerate(raws):
        name = f"{prefix}{number:05d}.{random.Random(number).randint(0, 10**9)}.host"
        tmp = maildir / "tmp" / name
        tmp.write_bytes(raw)
        tmp.rename(maildir / sub / (name + (":2,S" if sub == "cur" else "")))


def stored_raws(sessions: sessionmaker[Session]) -> list[bytes]:
    with sessions() as session:
        return [raw or b"" for raw in session.scalars(select(Message.raw).order_by(Message.id))]


def files(folder: Path) -> list[Path]:
    return sorted(p for sub in ("new", "cur") for p in (folder / sub).iterdir())


def make_source(cfg: MaildirConfig, sessions: sessionmaker[Session], clock: FrozenClock) -> MaildirSource:
    return MaildirSource(cfg, Ingestor(sessions, clock, 10**7), backoff=Backoff(base=0.05, cap=0.2))


def test_500_files_are_stored_once_and_moved(tmp_path: Path, sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    inbox = make_maildir(tmp_path / "inbox")
    delivered = varied_messages(500, seed=21)
    drop(inbox, delivered[:400], "new")
    drop(inbox, delivered[400:], "cur", prefix="c")
    source = make_source(MaildirConfig(path=inbox, processed=Path("verwerkt")), sessions, clock)
    assert source.run_once() == 500
    assert sorted(stored_raws(sessions)) == sorted(delivered)
    assert files(inbox) == []
    processed = tmp_path / "verwerkt"  # relative: a sibling of the inbox
    assert len(list((processed / "cur").iterdir())) == 500
    assert source.run_once() == 0


def test_without_processed_folder_files_are_kept_in_verwerkt(tmp_path: Path, sessions: sessionmaker[Session],
                                                             clock: FrozenClock) -> None:
    inbox = make_maildir(tmp_path / "inbox")
    drop(inbox, varied_messages(5, seed=22))
    source = make_source(MaildirConfig(path=inbox), sessions, clock)
    assert source.run_once() == 5
    assert files(inbox) == []
    assert len(list((inbox / ".Verwerkt" / "cur").iterdir())) == 5  # nothing deleted unless asked
    assert len(stored_raws(sessions)) == 5


def test_delete_processed_deletes_once_stored(tmp_path: Path, sessions: sessionmaker[Session],
                                              clock: FrozenClock) -> None:
    inbox = make_maildir(tmp_path / "inbox")
    drop(inbox, varied_messages(5, seed=27))
    source = make_source(MaildirConfig(path=inbox, delete_processed=True), sessions, clock)
    assert source.run_once() == 5
    assert files(inbox) == [] and not (inbox / ".Verwerkt").exists()
    assert len(stored_raws(sessions)) == 5


def test_processed_and_delete_processed_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="choose one"):
        MaildirConfig(path=tmp_path, processed=tmp_path / "done", delete_processed=True)


def test_crash_between_commit_and_move_stores_nothing_twice(
    tmp_path: Path, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    inbox = make_maildir(tmp_path / "inbox")
    delivered = varied_messages(8, seed=23)
    drop(inbox, delivered)
    ingestor = Ingestor(sessions, clock, 10**7)
    for path in files(inbox)[:5]:  # committed, then the process died before the rename
        ingestor.store(path.read_bytes(), origin="maildir", origin_ref=path.name)
    source = make_source(MaildirConfig(path=inbox, processed=tmp_path / "done"), sessions, clock)
    assert source.run_once() == 3
    assert sorted(stored_raws(sessions)) == sorted(delivered)
    assert files(inbox) == []


def test_same_file_name_processed_twice_keeps_both(tmp_path: Path, sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    inbox = make_maildir(tmp_path / "inbox")
    first, second = varied_messages(2, seed=24)
    source = make_source(MaildirConfig(path=inbox, processed=tmp_path / "done"), sessions, clock)
    (inbox / "new" / "same").write_bytes(first)
    assert source.run_once() == 1
    (inbox / "new" / "same").write_bytes(second)
    assert source.run_once() == 1
    assert sorted(p.name for p in (tmp_path / "done" / "cur").iterdir()) == ["same", "same.1"]


def test_wait_for_mail_wakes_on_a_new_file_and_on_the_event(
    tmp_path: Path, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    inbox = make_maildir(tmp_path / "inbox")
    source = make_source(MaildirConfig(path=inbox), sessions, clock)
    threading.Timer(0.3, drop, args=(inbox, varied_messages(1, seed=25))).start()
    started = time.monotonic()
    source.wait_for_mail(10.0, threading.Event())
    assert 0.25 < time.monotonic() - started < 1.5
    assert source.run_once() == 1
    wake = threading.Event()
    threading.Timer(0.2, wake.set).start()
    started = time.monotonic()
    source.wait_for_mail(10.0, wake)
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    source.wait_for_mail(0.3, threading.Event())
    assert 0.25 < time.monotonic() - started < 1.0


def test_missing_maildir_is_logged_and_retried_not_fatal(
    tmp_path: Path, sessions: sessionmaker[Session], clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = tmp_path / "not-yet"
    source = make_source(MaildirConfig(path=inbox), sessions, clock)
    assert source.run_once() == 0
    assert "retrying" in caplog.text
    make_maildir(inbox)
    drop(inbox, varied_messages(2, seed=26))
    deadline = time.monotonic() + 5
    stored = 0
    while stored < 2 and time.monotonic() < deadline:
        source.wait_for_mail(0.3, threading.Event())
        stored += source.run_once()
    assert stored == 2


@pytest.mark.slow
def test_sigkill_of_the_maildir_ingester_loses_nothing(tmp_path: Path, clock: FrozenClock) -> None:
    inbox = make_maildir(tmp_path / "inbox")
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    delivered = varied_messages(500, seed=27)
    args = [sys.executable, "-m", "tests.faults.ingest_worker", "--maildir", db_url, str(inbox), "done"]
    rng = random.Random(27)
    interrupted = 0  # kills that landed while the worker had stored part of its files
    for chunk in range(20):
        drop(inbox, delivered[chunk * 25 : (chunk + 1) * 25], prefix=f"k{chunk}-")
        before = len(stored_raws(sessions))
        worker = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            assert worker.stdout is not None and worker.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 0.1))
        finally:
            worker.kill()
            worker.wait(timeout=10)
            assert worker.stdout is not None
            worker.stdout.close()
        if len(stored_raws(sessions)) > before and files(inbox):
            interrupted += 1
    assert interrupted >= 3, f"only {interrupted} of 20 kills hit the worker mid-ingest"
    source = make_source(MaildirConfig(path=inbox, processed=Path("done")), sessions, clock)
    source.run_once()
    assert files(inbox) == []
    raws = stored_raws(sessions)
    assert len(raws) == len(set(raws)) == 500
    assert sorted(raws) == sorted(delivered)
    assert len(list((tmp_path / "done" / "cur").iterdir())) == 500
    engine.dispose()


def test_two_sources_on_one_maildir_store_each_file_once(
    tmp_path: Path, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    inbox = make_maildir(tmp_path / "inbox")
    delivered = varied_messages(300, seed=28)
    drop(inbox, delivered)
    config = MaildirConfig(path=inbox, processed=Path("done"))
    sources = [make_source(config, sessions, clock) for _ in range(2)]

    def run(source: MaildirSource) -> None:
        deadline = time.monotonic() + 30
        while files(inbox) and time.monotonic() < deadline:
            source.run_once()

    workers = [threading.Thread(target=run, args=(source,)) for source in sources]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert files(inbox) == []
    raws = stored_raws(sessions)
    assert len(raws) == len(set(raws)) == 300
    assert len(list((tmp_path / "done" / "cur").iterdir())) == 300
