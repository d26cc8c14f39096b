"""Run an ImapSource forever in its own process, so a test can SIGKILL it anywhere.

    python -m tests.faults.ingest_worker DB_URL HOST PORT USERNAME PASSWORD_FILE FETCH_BATCH
    python -m tests.faults.ingest_worker --maildir DB_URL MAILDIR PROCESSED

Prints "ready" once connected and working; never exits by itself.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from relay.config import ImapConfig, MaildirConfig
from relay.ingest.imap import ImapSource
from relay.ingest.maildir import MaildirSource
from relay.ingest.store import Ingestor
from relay.service.backoff import Backoff
from relay.service.clock import SystemClock
from storage.db import make_engine, session_factory


def run_forever(source: ImapSource | MaildirSource) -> None:
    wake = threading.Event()
    print("ready", flush=True)
    while True:
        source.run_once()
        source.wait_for_mail(0.2, wake)


def main(argv: list[str]) -> None:
    if argv[0] == "--maildir":
        maildir_main(argv[1:])
        return
    db_url, host, port, username, password_file, batch = argv
    cfg = ImapConfig(
        host=host, port=int(port), ssl=False, username=username,
        password_file=Path(password_file), fetch_batch=int(batch), timeout_seconds=5.0,
    )
    sessions = session_factory(make_engine(db_url))
    clock = SystemClock()
    source = ImapSource(cfg, Ingestor(sessions, clock, 10**7), sessions, clock, backoff=Backoff(0.05, 0.5))
    run_forever(source)


def maildir_main(argv: list[str]) -> None:
    db_url, path, processed = argv
    sessions = session_factory(make_engine(db_url))
    cfg = MaildirConfig(path=Path(path), processed=Path(processed))
    run_forever(MaildirSource(cfg, Ingestor(sessions, SystemClock(), 10**7), backoff=Backoff(0.05, 0.5)))


if __name__ == "__main__":
    main(sys.argv[1:])
