"""Run an ImapSource forever in its own process, so a test can SIGKILL it anywhere.

    python -m tests.faults.ingest_worker DB_URL HOST PORT USERNAME PASSWORD_FILE FETCH_BATCH

Prints "ready" once connected and working; never exits by itself.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from relay.backoff import Backoff
from relay.clock import SystemClock
from relay.config import ImapConfig
from relay.ingest import Ingestor
from relay.sources.imap import ImapSource
from storage.db import make_engine, session_factory


def main(argv: list[str]) -> None:
    db_url, host, port, username, password_file, batch = argv
    cfg = ImapConfig(
        host=host, port=int(port), ssl=False, username=username,
        password_file=Path(password_file), fetch_batch=int(batch), timeout_seconds=5.0,
    )
    sessions = session_factory(make_engine(db_url))
    clock = SystemClock()
    source = ImapSource(cfg, Ingestor(sessions, clock, 10**7), sessions, clock, backoff=Backoff(0.05, 0.5))
    wake = threading.Event()
    print("ready", flush=True)
    while True:
        source.run_once()
        source.wait_for_mail(0.2, wake)


if __name__ == "__main__":
    main(sys.argv[1:])
