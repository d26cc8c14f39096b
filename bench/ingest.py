"""Ingest and routing at scale, side by side with the bare work in the same run.

Two measurements, each against its own baseline on the same machine in the same run:

1. The whole pass. N varied messages (tests.mailgen) wait in two mailboxes of
   one private Dovecot. The baseline is a bare script: FETCH in batches, parse
   each message with ``email`` (policy.default, get_body, get_content), MOVE.
   binrelay does ``run --once``: store, parse, classify, merge duplicates,
   queue, and ask the coordinators (the requests go out over SMTP to a sink in
   another process). Target: binrelay's rate at least 0.5 of the baseline's.
   Beside them, the same messages parsed and classified alone (no IMAP, SQL
   or SMTP): the ceiling of any pass that classifies every message in one process.
2. Routing with a backlog. The same M new messages are routed into a database
   with no pending items and into one with ``--pending`` (10,000) pending
   reports in the merge window, spread over the wards and categories that
   routing gave to real varied messages. Merging is set never to succeed, so
   both do the same work after the duplicate search. Target: the cost per
   message with the backlog at most 1.2 times the cost without.

    .venv/bin/python bench/ingest.py [-n 5000] [-m 500] [--pending 10000] [--postgres]
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tomli_w
from sqlalchemy import select

from mail.message import parse_mail
from relay.config import load_config
from relay.devservers.dovecot import PrivateDovecot
from relay.devservers.postgres import PrivatePostgres
from relay.devservers.smtpsink import SinkProcess
from relay.devservers.stack import Ward, base_config, merge
from relay.ingest.store import Ingestor
from relay.routing.pipeline import route_pending
from relay.service.clock import FrozenClock
from relay.service.daemon import Daemon
from relay.service.runtime import Runtime, build_runtime, make_classifier
from relay.service.tokens import new_token
from storage.db import make_engine, migrate
from storage.models import DuplicateKey, Message, QueueItem
from tests import mailgen

os.environ.setdefault("BINRELAY_TEST_TOKEN_KEY", "a token key for the ingest bench only")
PROCESSED = "Verwerkt"
MAILBOX = "bin@example.org"
PASS_TARGET = 0.5
BACKLOG_TARGET = 1.2
# The demo town of tests.mailgen: every ward its messages name, one coordinator each.
WARDS = [Ward(name.lower().replace(" ", "-"), name, [f"coordinator{n}@coordinatoren.nl"])
         for n, name in enumerate(mailgen._WARDS)]


# ---------------------------------------------------------------- 1. the whole pass


def bare_fetch_and_parse(dovecot: PrivateDovecot, user: str, batch: int) -> int:
    """What a minimal script does: FETCH, parse every message and read its text, MOVE."""
    client = dovecot.client(user, timeout=60)
    client.create_folder(PROCESSED)
    client.select_folder("INBOX")
    total = 0
    uids = client.search(["ALL"])
    for start in range(0, len(uids), batch):
        chunk = uids[start : start + batch]
        for data in client.fetch(chunk, ["BODY.PEEK[]"]).values():
            parsed = email.message_from_bytes(data[b"BODY[]"], policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            body = parsed.get_body(preferencelist=("plain", "html"))
            if body is not None:
                body.get_content()
            total += 1
        client.move(chunk, PROCESSED)
    client.logout()
    return total


def write_config(workdir: Path, dovecot: PrivateDovecot, password: str, smtp_port: int, db_url: str,
                 overrides: dict[str, Any] | None = None) -> Path:
    secret = workdir / "imap.secret"
    secret.write_text(password)
    secret.chmod(0o600)
    assert dovecot.port is not None
    document = base_config(workdir, WARDS)
    document["network"]["address"] = MAILBOX
    document["database"] = {"url": db_url}
    document["imap"] = {"host": "127.0.0.1", "port": dovecot.port, "ssl": False, "starttls": False,
                        "username": MAILBOX, "password_file": str(secret), "processed_folder": PROCESSED,
                        "timeout_seconds": 60.0}
    document["smtp"] = {"host": "127.0.0.1", "port": smtp_port, "starttls": False, "connections": 4}
    document["approval"] = {"token_key_env": "BINRELAY_TEST_TOKEN_KEY", "token_key_auto": False}
    path = workdir / "binrelay.toml"
    path.write_text(tomli_w.dumps(merge(document, overrides or {})), encoding="utf-8")
    return path


def whole_pass(config_path: Path) -> tuple[int, int, int]:
    """``binrelay run --once`` in this process: (stored, routed, sent)."""
    daemon = Daemon(config_path)
    daemon.build()
    try:
        result = daemon.run_once()
    finally:
        daemon.close()
    if result.problems:
        sys.exit(f"run --once reported: {result.problems}")
    return result.stored, result.routed, result.sent


def classify_alone(config_path: Path, messages: list[bytes]) -> float:
    """Seconds to parse and classify ``messages`` in this process, nothing stored: the floor under any
    whole pass that classifies every message (the rules and the text model; no IMAP, SQL or SMTP)."""
    config = load_config(config_path)
    classifier = make_classifier(config)
    members: dict[str, str] = {}
    started = time.perf_counter()
    for raw in messages:
        classifier.classify(parse_mail(raw), members.get)
    return time.perf_counter() - started


@dataclass
class PassTimes:
    bare: float  # bare fetch + parse + move
    classify: float  # parse + classify alone
    ours: float  # binrelay run --once
    counts: tuple[int, int, int]  # stored, routed, sent


def measure_pass(args: argparse.Namespace, db_url: str | None) -> PassTimes:
    messages = mailgen.varied_messages(args.n, seed=2026, to=MAILBOX)
    sink = SinkProcess()
    try:
        with PrivateDovecot() as dovecot, tempfile.TemporaryDirectory(prefix="binrelay-ingest-") as tmp:
            dovecot.add_user("raw@example.org")
            password = dovecot.add_user(MAILBOX)
            for user in ("raw@example.org", MAILBOX):
                dovecot.deliver_many(user, messages)
            config = write_config(Path(tmp), dovecot, password, sink.port, db_url or f"sqlite:///{tmp}/pass.db")
            started = time.perf_counter()
            bare = bare_fetch_and_parse(dovecot, "raw@example.org", args.batch)
            bare_seconds = time.perf_counter() - started
            classify_seconds = classify_alone(config, messages)
            started = time.perf_counter()
            counts = whole_pass(config)
            ours_seconds = time.perf_counter() - started
    finally:
        sink.close()
    if bare != args.n or counts[0] != args.n or counts[1] != args.n:
        sys.exit(f"count mismatch: bare {bare}, binrelay stored/routed {counts[:2]}, expected {args.n}")
    return PassTimes(bare_seconds, classify_seconds, ours_seconds, counts)


# ---------------------------------------------------------------- 2. routing with a backlog


@dataclass
class Backlog:
    rt: Runtime
    ingestor: Ingestor

    def route(self, raws: list[bytes]) -> float:
        """Store ``raws`` and route them: seconds per message for the routing."""
        for raw in raws:
            self.ingestor.store(raw, origin="bench", origin_ref=None)
        started = time.perf_counter()
        stats = route_pending(self.rt)
        seconds = time.perf_counter() - started
        assert stats.routed == len(raws) and stats.failed == 0, stats
        return seconds / len(raws)


@contextmanager
def backlog_world(tmp: Path, name: str, db_url: str | None, smtp_port: int) -> Iterator[Backlog]:
    url = db_url or f"sqlite:///{tmp}/{name}.db"
    document = base_config(tmp, WARDS)
    document["database"] = {"url": url}
    document["maildir"] = {"path": str(tmp / "Maildir")}
    document["smtp"] = {"host": "127.0.0.1", "port": smtp_port, "starttls": False}
    document["approval"] = {"token_key_env": "BINRELAY_TEST_TOKEN_KEY", "token_key_auto": False,
                            "merge_similarity": 1.0}
    path = tmp / f"{name}.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    engine = make_engine(url)
    migrate(engine)
    clock = FrozenClock(datetime.now(UTC))
    rt = build_runtime(load_config(path), engine, clock)
    try:
        yield Backlog(rt, Ingestor(rt.sessions, clock, rt.config.limits.max_message_bytes))
    finally:
        engine.dispose()


def fill_backlog(world: Backlog, pending: int, seed_messages: int) -> None:
    """``pending`` pending reports: ``seed_messages`` routed for real, then copied (text, signature,
    category, wards, index keys) until there are enough, all inside the merge window."""
    world.route(mailgen.varied_messages(seed_messages, seed=7, to=MAILBOX))
    now = world.rt.clock.now()
    with world.rt.sessions() as session, session.begin():
        originals = list(session.scalars(select(QueueItem).where(QueueItem.merged_into_id.is_(None))))
        copies = 0
        while copies + len(originals) < pending:
            for item in originals:
                if copies + len(originals) >= pending:
                    break
                copy_report(session, item, now)
                copies += 1
                if copies % 1000 == 0:
                    session.flush()


def copy_report(session: Any, item: QueueItem, now: datetime) -> None:
    source = item.message
    assert source is not None
    message = Message(dedup_key=new_token() + new_token(), message_id=None, origin="bench", received_at=now,
                      size=source.size, raw=None, from_address=source.from_address, subject=source.subject,
                      body_text=source.body_text, facts=source.facts, signature=source.signature,
                      status="held")
    copy = QueueItem(message=message, kind=item.kind, status=item.status, source=item.source,
                     category=item.category, urgency=item.urgency, proposed_wards=list(item.proposed_wards),
                     partners=[], token_hash=new_token() + new_token(), created_at=now,
                     expires_at=item.expires_at, remind_at=item.remind_at, escalate_at=item.escalate_at,
                     warnings=[])
    session.add_all([message, copy])
    session.flush()
    for ward in item.proposed_wards or [""]:
        session.add(DuplicateKey(head_id=copy.id, message_id=message.id, category=item.category or "other",
                                 ward=ward, created_at=now))


def measure_backlog(args: argparse.Namespace, db_urls: tuple[str | None, str | None]) -> tuple[float, float]:
    fresh = mailgen.varied_messages(args.m, seed=99, to=MAILBOX)
    sink = SinkProcess()
    try:
        with tempfile.TemporaryDirectory(prefix="binrelay-backlog-") as tmp, \
                backlog_world(Path(tmp), "empty", db_urls[0], sink.port) as empty, \
                backlog_world(Path(tmp), "full", db_urls[1], sink.port) as full:
            fill_backlog(full, args.pending, min(args.pending, 500))
            # Alternate halves so load from elsewhere on the machine hits both alike.
            half = len(fresh) // 2
            empty_costs = [empty.route(fresh[:half])]
            full_costs = [full.route(fresh[:half])]
            full_costs.append(full.route(fresh[half:]))
            empty_costs.append(empty.route(fresh[half:]))
    finally:
        sink.close()
    return statistics.mean(empty_costs), statistics.mean(full_costs)


# ---------------------------------------------------------------- the command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5000, help="messages for the whole pass (default 5000)")
    parser.add_argument("-m", type=int, default=500, help="new messages routed beside the backlog (default 500)")
    parser.add_argument("--pending", type=int, default=10_000, help="pending items in the backlog (default 10000)")
    parser.add_argument("--batch", type=int, default=200, help="UIDs per FETCH for the baseline (default 200)")
    parser.add_argument("--postgres", action="store_true", help="a private PostgreSQL instead of SQLite files")
    parser.add_argument("--only", choices=("pass", "backlog"), help="run one of the two measurements")
    args = parser.parse_args()
    if args.postgres:
        with PrivatePostgres() as pg:
            return report(args, pg.url, (pg.create_database("backlog_empty"), pg.create_database("backlog_full")))
    return report(args, None, (None, None))


def report(args: argparse.Namespace, pass_url: str | None, backlog_urls: tuple[str | None, str | None]) -> int:
    met = True
    database = "PostgreSQL" if pass_url else "SQLite"
    if args.only in (None, "pass"):
        times = measure_pass(args, pass_url)
        stored, routed, sent = times.counts
        ratio = times.bare / times.ours
        met &= ratio >= PASS_TARGET
        print(f"whole pass, {args.n} varied messages, {database}:")
        print(f"  bare fetch + parse + move : {args.n / times.bare:7.0f} msg/s ({times.bare:.1f} s)")
        print(f"  parse + classify alone    : {args.n / times.classify:7.0f} msg/s ({times.classify:.1f} s; "
              f"ratio {times.bare / times.classify:.2f}: the most any whole pass in one process can reach)")
        print(f"  binrelay run --once       : {args.n / times.ours:7.0f} msg/s ({times.ours:.1f} s; stored {stored}, "
              f"routed {routed}, sent {sent} requests and answers)")
        print(f"  ratio                     : {ratio:7.2f} (target >= {PASS_TARGET})")
    if args.only in (None, "backlog"):
        empty, full = measure_backlog(args, backlog_urls)
        ratio = full / empty
        met &= ratio <= BACKLOG_TARGET
        print(f"routing {args.m} new messages, {database}:")
        print(f"  no pending items          : {empty * 1000:7.2f} ms per message")
        print(f"  {args.pending} pending items     : {full * 1000:7.2f} ms per message")
        print(f"  ratio                     : {ratio:7.2f} (target <= {BACKLOG_TARGET})")
    print("targets met" if met else "targets NOT met")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
