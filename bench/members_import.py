"""Member import speed: ``binrelay members import`` against a bare executemany of the same rows.

Both load the same N-row CSV into a fresh database in the same run, so the
ratio is meaningful on a noisy machine. binrelay does more per row (address
and ward validation, duplicates, updates of existing members, a token each,
one transaction per chunk). A second import of the same file measures updates.

    .venv/bin/python bench/members_import.py [-n 50000] [--db-url URL]
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from relay.cli.members import members_import
from relay.config import Config, parse_config
from relay.service.clock import SystemClock
from relay.service.runtime import build_runtime
from relay.service.tokens import new_token
from storage.db import make_engine, migrate, session_factory
from storage.models import Member

WARDS = ["Maaspoort", "Empel", "Binnenstad"]


def config(url: str) -> Config:
    return parse_config({
        "network": {"name": "BIN Bench", "address": "bin@example.org"},
        "imap": {"host": "127.0.0.1", "username": "bin@example.org", "password_env": "X"},
        "smtp": {"host": "127.0.0.1"},
        "database": {"url": url},
        "wards": [{"slug": name.lower(), "name": name} for name in WARDS],
    })


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "ward"])
        for i in range(rows):
            writer.writerow([f"member{i}@example.nl", f"Member {i}", WARDS[i % len(WARDS)]])


def bare(url: str, path: Path) -> float:
    """What a minimal script would do: read the CSV and insert every row, no checks."""
    engine = make_engine(url)
    migrate(engine)
    now = datetime.now(UTC)
    started = time.perf_counter()
    with path.open(encoding="utf-8") as handle, session_factory(engine)() as session, session.begin():
        rows: list[dict[str, Any]] = [{"email": r["email"], "name": r["name"], "ward": r["ward"].lower(), "language": "nl",
                 "status": "active", "bounce_score": 0, "unsubscribe_token": new_token(), "preferences": {},
                 "joined_at": now} for r in csv.DictReader(handle)]
        session.execute(insert(Member), rows)
    engine.dispose()
    return time.perf_counter() - started


def binrelay(url: str, path: Path) -> tuple[float, float]:
    cfg = config(url)
    engine = make_engine(url)
    migrate(engine)
    rt = build_runtime(cfg, engine, SystemClock())
    timings = []
    for _ in range(2):  # the first run adds, the second updates
        started = time.perf_counter()
        members_import(rt, path, io.StringIO(), io.StringIO())
        timings.append(time.perf_counter() - started)
    engine.dispose()
    return timings[0], timings[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50_000)
    parser.add_argument("--db-url", help="default: a fresh SQLite file per side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "members.csv"
        write_csv(path, args.n)
        raw = bare(args.db_url or f"sqlite:///{work / 'bare.db'}", path)
        added, updated = binrelay(args.db_url or f"sqlite:///{work / 'binrelay.db'}", path)
    print(f"rows: {args.n}")
    print(f"bare executemany:        {raw:6.2f} s  ({args.n / raw:8.0f} rows/s)")
    print(f"binrelay import (add):   {added:6.2f} s  ({args.n / added:8.0f} rows/s)  ratio {added / raw:4.1f}x")
    print(f"binrelay import (update):{updated:6.2f} s  ({args.n / updated:8.0f} rows/s)  ratio {updated / raw:4.1f}x")


if __name__ == "__main__":
    main()
