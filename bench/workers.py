"""Throughput per number of workers: 1, 2 and 4 ``binrelay run`` processes on one PostgreSQL.

    .venv/bin/python bench/workers.py [--members 20000] [--reports 1000] [--replies 100]
                                      [--workers 1 2 4] [--connections 2] [--timeout 1800]

For each worker count N the bench makes a fresh database on one private
PostgreSQL and a fresh mailbox on one private Dovecot, then prepares a mixed
load before any daemon runs:

- a ward of ``--members`` members and one approved alert to all of them
  (``publish_alert``: one outbox row per member);
- ``--reports`` incoming reports (``tests.mailgen.varied_messages``: residents
  and police, in every MIME shape) in the shared INBOX;
- ``--replies`` member mails in the same INBOX: half are subscriptions from new
  residents ("AANMELDEN 5221", answered with a confirmation up to
  ``limits.confirmations_per_hour``, 30 by default), half are members' replies
  to their copy of the alert (held for the coordinators).

Then N real daemon processes start against the same configuration file and
the bench polls the database until every incoming message is stored and
routed (none left with status ``new``) and no outbox row is pending. It
prints, per N, in seconds from the moment the processes were started (so
start-up is included): until every incoming message was routed (and routed
per second), until the last copy of the alert was sent (and copies per
second), until the outbox was empty (and messages of every kind sent per
second: copies, approval requests, confirmations); then what an SMTP sink in
its own process counted: messages received, duplicates (copies accepted minus
distinct (recipient, Message-ID)), deliveries missing (outbox rows whose
signed return path the sink never saw) and the in-flight bound
(N x ``relay.delivery.sender.in_flight_limit(connections)``, the most a
crash could duplicate). No process crashes here, so the expected duplicates
are 0; exit 0 when every run finished in time with 0 missing and duplicates
within the bound.

Everything listens on 127.0.0.1; the daemons are stopped with SIGTERM (then
SIGKILL after a bounded wait) and every temporary directory is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tomli_w
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine, func, select

from relay.config import load_config
from relay.delivery.alerts import publish_alert
from relay.delivery.render import AlertRenderer
from relay.delivery.sender import in_flight_limit
from relay.devservers.dovecot import PrivateDovecot
from relay.devservers.postgres import PrivatePostgres
from relay.devservers.stack import NETWORK_ADDRESS, base_config, compose, parse, reply
from relay.service.clock import SystemClock
from relay.service.runtime import build_runtime
from storage.db import make_engine, migrate, session_factory
from storage.models import Delivery, Message
from tests.delivery_world import add_members, approved_item, report_bytes
from tests.mailgen import varied_messages

TOKEN_ENV = "BINRELAY_TEST_TOKEN_KEY"
os.environ.setdefault(TOKEN_ENV, "a token key for the workers bench only")
WARD = "maaspoort"
POLL_SECONDS = 0.2
STOP_TIMEOUT_S = 60.0
SINK_TIMEOUT_S = 30.0
VERP = re.compile(r"bounce-(\d+)-")
MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(?:\r?\n[ \t]+)?(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


# -- the SMTP sink, in its own process ---------------------------------------------------------


class CountingHandler:
    """aiosmtpd hooks that count copies per (recipient, Message-ID) and per outbox row; keep no bytes."""

    def __init__(self) -> None:
        self.total = 0
        self.copies: Counter[tuple[str, str]] = Counter()
        self.deliveries: Counter[int] = Counter()

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        # PIPELINING as Postfix offers it; each reply written at once (no Nagle delay), as in
        # relay.devservers.smtpsink.
        sock = server.transport.get_extra_info("socket") if server.transport is not None else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
        found = MESSAGE_ID.search(head)
        message_id = found.group(1).decode("ascii", "replace") if found else f"(none:{self.total})"
        self.total += 1
        for recipient in envelope.rcpt_tos:
            self.copies[(recipient.lower(), message_id)] += 1
        verp = VERP.search(str(envelope.mail_from or ""))
        if verp is not None:
            self.deliveries[int(verp.group(1))] += 1
        return "250 Message accepted for delivery"

    def stats(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "distinct": len(self.copies),
            "copies": sum(self.copies.values()),
            "delivery_ids": sorted(self.deliveries),
        }

    def clear(self) -> None:
        self.total = 0
        self.copies.clear()
        self.deliveries.clear()


async def serve_sink() -> None:
    """Print the port, then answer ``stats`` (one JSON line) and ``clear`` on stdin until it closes."""
    handler = CountingHandler()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="127.0.0.1", data_size_limit=64 * 1024 * 1024,
                     enable_SMTPUTF8=True, auth_require_tls=False),
        sock=sock,
    )
    print(sock.getsockname()[1], flush=True)
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip() == "stats":
                print(json.dumps(handler.stats()), flush=True)
            elif line.strip() == "clear":
                handler.clear()
                print(0, flush=True)
    finally:
        server.close()
        await server.wait_closed()


class SinkProcess:
    """``bench/workers.py --serve-sink`` in a child process, so it does not share the bench's GIL."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-sink"], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.port = int(self._readline())

    def _readline(self) -> str:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the SMTP sink exited ({self._process.poll()})")
        return line

    def _ask(self, command: str) -> str:
        assert self._process.stdin is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return self._readline()

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self._ask("stats"))
        return result

    def clear(self) -> None:
        self._ask("clear")

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=SINK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=SINK_TIMEOUT_S)


# -- one run ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    workers: int
    incoming: int
    outbox: int
    routed_s: float
    fanout_s: float
    sent_s: float
    finished: bool
    died: bool  # a daemon exited before the work was done
    sent: int
    copies: int
    failed: int
    routing_failed: int
    received: int
    duplicates: int
    missing: int
    bound: int
    exit_codes: list[int | None]


def write_config(workdir: Path, dovecot: PrivateDovecot, user: str, smtp_port: int, db_url: str,
                 connections: int) -> Path:
    assert dovecot.port is not None
    secret = workdir / "imap.secret"
    secret.write_text(dovecot.add_user(user))
    secret.chmod(0o600)
    document = base_config(workdir)
    document["database"] = {"url": db_url}
    document["imap"] = {
        "host": "127.0.0.1", "port": dovecot.port, "ssl": False, "starttls": False,
        "username": user, "password_file": str(secret), "mailbox": "INBOX",
        "processed_folder": "Verwerkt", "timeout_seconds": 30.0,
    }
    document["smtp"] = {
        "host": "127.0.0.1", "port": smtp_port, "ssl": False, "starttls": False,
        "connections": connections, "timeout_seconds": 30.0,
    }
    document["approval"] = {"token_key_env": TOKEN_ENV, "token_key_auto": False}
    path = workdir / "binrelay.toml"
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return path


def prepare(config_path: Path, engine: Engine, members: int, reports: int, replies: int) -> list[bytes]:
    """Seed the members and the published alert; return the incoming mail (reports and replies)."""
    config = load_config(config_path)
    migrate(engine)
    now = datetime.now(UTC)
    rt = build_runtime(config, engine, SystemClock())
    answering = replies - replies // 2
    with rt.sessions() as session, session.begin():
        ward = add_members(session, WARD, members, now)
        item = approved_item(session, now, raw=report_bytes(), wards=[WARD])
        alert = publish_alert(rt, session, item, decided_by=config.wards[0].coordinators[0], now=now)
        session.flush()
        renderer = AlertRenderer(rt.config, rt.templates, rt.classifier.rules, rt.signer, alert, now=now)
        rows = {member_id: delivery_id for member_id, delivery_id in session.execute(
            select(Delivery.member_id, Delivery.id).where(Delivery.alert_id == alert.id))}
        step = max(1, members // max(1, answering))
        copies = [parse(renderer.render(member, rows[member.id]).raw)
                  for member in ward[::step][:answering]]
    mail = varied_messages(reports, seed=2026, to=NETWORK_ADDRESS)
    mail += [reply(copy, sender=str(copy["To"]), text="Ik heb vannacht hetzelfde gezien bij de speeltuin.")
             for copy in copies]
    mail += [compose(sender=f"nieuw{n}@bewoners.nl", subject="AANMELDEN 5221", body="AANMELDEN 5221 AB\n")
             for n in range(replies // 2)]
    random.Random(16).shuffle(mail)
    return mail


@dataclass
class Counts:
    stored: int
    new: int
    pending: int
    sent: int
    failed: int
    routing_failed: int


def counts(engine: Engine) -> Counts:
    with session_factory(engine)() as session:
        messages: dict[str, int] = {status: n for status, n in session.execute(
            select(Message.status, func.count()).group_by(Message.status))}
        deliveries: dict[str, int] = {status: n for status, n in session.execute(
            select(Delivery.status, func.count()).group_by(Delivery.status))}
    return Counts(stored=sum(messages.values()), new=messages.get("new", 0),
                  pending=deliveries.get("pending", 0), sent=deliveries.get("sent", 0),
                  failed=deliveries.get("failed", 0), routing_failed=messages.get("failed", 0))


def start_daemon(config_path: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "relay.cli.main", "--config", str(config_path), "run"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
        )


def stop_daemons(daemons: list[subprocess.Popen[bytes]]) -> list[int | None]:
    """SIGTERM to all, then a bounded wait each, then SIGKILL."""
    for daemon in daemons:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for daemon in daemons:
        try:
            daemon.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(timeout=10)
    return [daemon.returncode for daemon in daemons]


def run_one(run: int, workers: int, args: argparse.Namespace, pg: PrivatePostgres, dovecot: PrivateDovecot,
            sink: SinkProcess) -> Outcome:
    """One fresh database and mailbox, the load, ``workers`` daemons until it is all done."""
    with tempfile.TemporaryDirectory(prefix=f"binrelay-workers-{workers}-") as tmp:
        workdir = Path(tmp)
        database = f"workers_{run}_{workers}"
        db_url = pg.create_database(database)
        user = f"bin-workers-{run}-{workers}@bin-demo.nl"
        config_path = write_config(workdir, dovecot, user, sink.port, db_url, args.connections)
        engine = make_engine(db_url)
        try:
            mail = prepare(config_path, engine, args.members, args.reports, args.replies)
            dovecot.deliver_many(user, mail)
            sink.clear()
            before = counts(engine).stored  # the published alert's own message
            log = workdir / "daemons.log"
            started, started_at = time.monotonic(), datetime.now(UTC)
            daemons = [start_daemon(config_path, log) for _ in range(workers)]
            routed_s = sent_s = float("inf")
            died = False
            try:
                deadline = started + args.timeout
                while time.monotonic() < deadline:
                    now = counts(engine)
                    if routed_s == float("inf") and now.stored >= before + len(mail) and now.new == 0:
                        routed_s = time.monotonic() - started
                    if routed_s != float("inf") and now.pending == 0:
                        sent_s = time.monotonic() - started
                        break
                    if any(daemon.poll() is not None for daemon in daemons):
                        died = True  # reported below
                        break
                    time.sleep(POLL_SECONDS)
            finally:
                exit_codes = stop_daemons(daemons)
            final = counts(engine)
            with session_factory(engine)() as session:
                outbox = set(session.scalars(select(Delivery.id)))
                copies = int(session.scalar(select(func.count()).select_from(Delivery).where(
                    Delivery.alert_id.is_not(None), Delivery.status == "sent")) or 0)
                last_copy = session.scalar(select(func.max(Delivery.sent_at)).where(
                    Delivery.alert_id.is_not(None)))
            fanout_s = (last_copy - started_at).total_seconds() if last_copy is not None else float("inf")
        finally:
            engine.dispose()
            pg.drop_database(database)
        stats = sink.stats()
        finished = sent_s != float("inf")
        if not finished or any(code != 0 for code in exit_codes):
            print(f"  N={workers}: not finished or a daemon failed (exit codes {exit_codes}); the log ends:\n"
                  + log.read_text(errors="replace")[-3000:])
    return Outcome(
        workers=workers, incoming=len(mail), outbox=len(outbox), routed_s=routed_s, fanout_s=fanout_s,
        sent_s=sent_s, finished=finished, died=died, sent=final.sent, copies=copies, failed=final.failed, routing_failed=final.routing_failed,
        received=int(stats["total"]), duplicates=int(stats["copies"]) - int(stats["distinct"]),
        missing=len(outbox - set(stats["delivery_ids"])), bound=workers * in_flight_limit(args.connections),
        exit_codes=exit_codes,
    )


def show(outcome: Outcome) -> str:
    routed_rate = outcome.incoming / outcome.routed_s
    fanout_rate = outcome.copies / outcome.fanout_s
    sent_rate = outcome.sent / outcome.sent_s
    return (f"{outcome.workers:>7} {outcome.routed_s:>8.1f} {routed_rate:>8.1f} {outcome.fanout_s:>8.1f} "
            f"{fanout_rate:>8.0f} {outcome.sent_s:>6.1f} {sent_rate:>6.0f} {outcome.received:>8} "
            f"{outcome.duplicates:>5} {outcome.bound:>5} {outcome.missing:>7} {outcome.failed:>6}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20000, help="members of the ward the alert goes to")
    parser.add_argument("--reports", type=int, default=1000, help="incoming reports in the mailbox")
    parser.add_argument("--replies", type=int, default=100,
                        help="member mails: half subscriptions, half replies to the alert")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts to run")
    parser.add_argument("--connections", type=int, default=2, help="smtp.connections of each process")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one run may take")
    parser.add_argument("--serve-sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sink:
        asyncio.run(serve_sink())
        return 0

    outcomes: list[Outcome] = []
    sink = SinkProcess()
    try:
        with PrivatePostgres() as pg, PrivateDovecot() as dovecot:
            for run, workers in enumerate(args.workers):
                outcome = run_one(run, workers, args, pg, dovecot, sink)
                outcomes.append(outcome)
                print(f"  N={workers}: {outcome.incoming} incoming, {outcome.outbox} outbox rows, "
                      f"done in {outcome.sent_s:.1f} s", flush=True)
    finally:
        sink.close()

    print(f"members={args.members} reports={args.reports} replies={args.replies} "
          f"connections={args.connections} per process, PostgreSQL, {os.cpu_count()} CPUs; "
          "seconds from the processes' start")
    print("workers routed_s routed/s fanout_s copies/s sent_s sent/s received  dups bound missing failed")
    for outcome in outcomes:
        print(show(outcome))
    ok = True
    for outcome in outcomes:
        problems = []
        if outcome.died:
            problems.append("a daemon exited before the work was done")
        elif not outcome.finished:
            problems.append(f"not done within {args.timeout:.0f} s")
        if outcome.missing:
            problems.append(f"{outcome.missing} outbox rows never reached the sink")
        if outcome.duplicates > outcome.bound:
            problems.append(f"{outcome.duplicates} duplicates, beyond the in-flight bound {outcome.bound}")
        elif outcome.duplicates:
            print(f"note: N={outcome.workers}: {outcome.duplicates} duplicates without a crash "
                  f"(within the bound {outcome.bound}, expected 0)")
        if outcome.routing_failed:
            problems.append(f"{outcome.routing_failed} messages failed routing")
        if any(code != 0 for code in outcome.exit_codes):
            problems.append(f"daemon exit codes {outcome.exit_codes}")
        if problems:
            ok = False
            print(f"N={outcome.workers}: " + "; ".join(problems))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
