"""Ingest speed: binrelay's IMAP source against a bare imapclient FETCH+MOVE loop.

Both read the same N messages from a private Dovecot in the same run, so the
ratio is meaningful on a noisy machine. binrelay does more per message (header
parse, sha256 dedup key, one committed SQLite transaction, state bookkeeping).

    .venv/bin/python bench/ingest.py [-n 2000] [--batch 200] [--db-url URL | --postgres]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from relay.config import ImapConfig
from relay.devservers.dovecot import PrivateDovecot
from relay.ingest.imap import ImapSource
from relay.ingest.store import Ingestor
from relay.service.clock import SystemClock
from storage.db import make_engine, migrate, session_factory
from tests.mailgen import varied_messages

PROCESSED = "Verwerkt"


def raw_loop(dovecot: PrivateDovecot, user: str, batch: int) -> int:
    """What a minimal script would do: search, fetch bodies, move; no storage."""
    client = dovecot.client(user, timeout=60)
    client.create_folder(PROCESSED)
    client.select_folder("INBOX")
    total = 0
    uids = client.search(["ALL"])
    for start in range(0, len(uids), batch):
        chunk = uids[start : start + batch]
        bodies = client.fetch(chunk, ["BODY.PEEK[]"])
        total += sum(1 for data in bodies.values() if data.get(b"BODY[]"))
        client.move(chunk, PROCESSED)
    client.logout()
    return total


def binrelay_ingest(dovecot: PrivateDovecot, user: str, batch: int, db_url: str, secret: Path) -> int:
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    clock = SystemClock()
    assert dovecot.port is not None
    cfg = ImapConfig(
        host=dovecot.host, port=dovecot.port, ssl=False, username=user,
        password_file=secret, fetch_batch=batch, processed_folder=PROCESSED,
    )
    source = ImapSource(cfg, Ingestor(sessions, clock, 25 * 1024 * 1024), sessions, clock)
    stored = source.run_once()
    source.close()
    engine.dispose()
    return stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="messages per side (default 2000)")
    parser.add_argument("--batch", type=int, default=200, help="UIDs per FETCH (default 200)")
    parser.add_argument("--db-url", help="database for binrelay (default: a fresh SQLite file)")
    parser.add_argument("--postgres", action="store_true", help="use a private PostgreSQL server")
    args = parser.parse_args()
    if args.postgres:
        from relay.devservers.postgres import PrivatePostgres

        with PrivatePostgres() as pg:
            args.db_url = pg.url
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:
    messages = varied_messages(args.n, seed=2026)
    size = sum(map(len, messages)) / len(messages)
    with PrivateDovecot() as dovecot, tempfile.TemporaryDirectory() as tmp:
        dovecot.add_user("raw@example.org")
        password = dovecot.add_user("bin@example.org")
        secret = Path(tmp) / "password"
        secret.write_text(password)
        for user in ("raw@example.org", "bin@example.org"):
            dovecot.deliver_many(user, messages)
        db_url = args.db_url or f"sqlite:///{tmp}/bench.db"

        started = time.perf_counter()
        raw_count = raw_loop(dovecot, "raw@example.org", args.batch)
        raw_seconds = time.perf_counter() - started

        started = time.perf_counter()
        bin_count = binrelay_ingest(dovecot, "bin@example.org", args.batch, db_url, secret)
        bin_seconds = time.perf_counter() - started

    if raw_count != args.n or bin_count != args.n:
        sys.exit(f"count mismatch: raw {raw_count}, binrelay {bin_count}, expected {args.n}")
    raw_rate, bin_rate = raw_count / raw_seconds, bin_count / bin_seconds
    print(f"messages: {args.n} (avg {size / 1024:.1f} KiB), batch {args.batch}, db {db_url.split(':')[0]}")
    print(f"raw imapclient FETCH+MOVE : {raw_rate:8.0f} msg/s ({raw_seconds:.2f} s)")
    print(f"binrelay ImapSource       : {bin_rate:8.0f} msg/s ({bin_seconds:.2f} s)")
    print(f"ratio binrelay/raw        : {bin_rate / raw_rate:8.2f}")


if __name__ == "__main__":
    main()
