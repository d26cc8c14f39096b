"""Fan-out speed: ``deliver_pending`` against raw SMTP to the same sink.

    .venv/bin/python bench/fanout.py [--members 5000] [--connections 4] [--db URL]

One alert to N members is published and delivered with ``deliver_pending``
(claim, render, send, mark sent). The baselines send the same number of
messages of the same size over the same number of reused connections to the
same sink, in the same run: a bare aiosmtplib sender (one event loop, one task
per connection; the target, ratio >= 0.8) and plain smtplib threads (shown
beside it). The sink runs in its own process, offering PIPELINING as Postfix
does, so it does not share this one's GIL. Prints the rates, the ratios and
this process's peak RSS (target <= 200 MB with 100,000 members).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiosmtplib
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from relay.delivery.alerts import publish_alert
from relay.delivery.render import AlertRenderer
from relay.delivery.sender import close_connections, deliver_pending
from relay.devservers.smtpsink import SinkProcess
from relay.service.clock import SystemClock
from relay.service.runtime import Runtime, build_runtime
from relay.service.tokens import new_token
from storage.db import make_engine, migrate, session_factory
from storage.members import insert_members
from storage.models import Alert, Member
from tests.delivery_world import approved_item, make_config, report_bytes

os.environ.setdefault("BINRELAY_TEST_TOKEN_KEY", "a token key for the fan-out bench only")
RATIO_TARGET = 0.8
RSS_TARGET_MB = 200


def raw_baseline(port: int, messages: int, connections: int, sample: bytes) -> float:
    """Seconds to send ``messages`` copies of ``sample`` over ``connections`` reused connections."""
    shares = [messages // connections + (1 if i < messages % connections else 0) for i in range(connections)]

    def send(share: int, index: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            for n in range(share):
                client.sendmail("bin+bounce-1@example.org", [f"m{index}-{n}@example.net"], sample)

    threads = [threading.Thread(target=send, args=(share, i)) for i, share in enumerate(shares)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start


def add_members_in_batches(sessions: sessionmaker[Session], count: int, now: datetime) -> None:
    """``count`` members of one ward, inserted in batches (no ORM objects: this process's peak memory
    is what the delivery holds, not the set-up)."""
    for start in range(0, count, 5000):
        rows = [{"email": f"lid{i}@example.net", "name": f"Bewoner {i}", "ward": "maaspoort", "language": "nl",
                 "status": "active", "bounce_score": 0, "unsubscribe_token": new_token(), "joined_at": now,
                 "preferences": {}} for i in range(start, min(start + 5000, count))]
        with sessions() as session, session.begin():
            insert_members(session, rows)


def aiosmtplib_baseline(port: int, messages: int, connections: int, sample: bytes) -> float:
    """Seconds for a bare aiosmtplib sender: ``connections`` clients on one loop, one message each time."""
    shares = [messages // connections + (1 if i < messages % connections else 0) for i in range(connections)]

    async def send(share: int, index: int) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30) as client:
            for n in range(share):
                await client.sendmail("bin+bounce-1@example.org", [f"m{index}-{n}@example.net"], sample)

    async def everyone() -> None:
        await asyncio.gather(*(send(share, i) for i, share in enumerate(shares)))

    start = time.perf_counter()
    asyncio.run(everyone())
    return time.perf_counter() - start


def time_deliver(rt: Runtime, sink: SinkProcess, members: int) -> tuple[float, float]:
    """Publish one alert to every member and time ``deliver_pending``: (seconds, CPU seconds)."""
    now = datetime.now(UTC)
    with rt.sessions() as session, session.begin():
        item = approved_item(session, now, raw=report_bytes(body="Vannacht is ingebroken. " * 60))
        publish_alert(rt, session, item, decided_by="anna@example.org", now=now)
    start, cpu = time.perf_counter(), time.process_time()
    stats = deliver_pending(rt)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    arrived = sink.count()
    assert stats.sent == members == arrived, (stats, arrived)
    return seconds, cpu_seconds


def sample_copy(rt: Runtime) -> bytes:
    """One member's copy of the newest alert, byte for byte, for the baseline."""
    with rt.sessions() as session:
        alert = session.scalars(select(Alert).order_by(Alert.id.desc())).first()
        member = session.scalars(select(Member)).first()
        assert alert is not None and member is not None
        return AlertRenderer(rt.config, rt.templates, rt.classifier.rules, rt.signer, alert,
                             now=datetime.now(UTC)).render(member, 1).raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs; medians are reported")
    parser.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()

    sink = SinkProcess()
    try:
        with tempfile.TemporaryDirectory(prefix="binrelay-fanout-") as tmp:
            db_url = args.db or f"sqlite:///{tmp}/fanout.db"
            engine = make_engine(db_url)
            migrate(engine)
            sessions = session_factory(engine)
            config = make_config(sink.port, db_url)
            config = config.model_copy(update={"smtp": config.smtp.model_copy(
                update={"connections": args.connections})})
            rt = build_runtime(config, sessions, SystemClock())
            now = datetime.now(UTC)
            add_members_in_batches(sessions, args.members, now)
            ours_runs: list[tuple[float, float]] = []
            ours_peak_mb = 0.0
            raw_runs: list[tuple[float, float]] = []
            aio_runs: list[tuple[float, float]] = []
            for _ in range(args.rounds):
                # Alternate them so load from elsewhere on the machine hits all alike.
                ours_runs.append(time_deliver(rt, sink, args.members))
                # Before any baseline runs: this process's peak so far is binrelay's (set-up, publish, send).
                ours_peak_mb = max(ours_peak_mb, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
                sample = sample_copy(rt)
                sink.clear()
                for runs, baseline in ((aio_runs, aiosmtplib_baseline), (raw_runs, raw_baseline)):
                    cpu = time.process_time()
                    seconds = baseline(sink.port, args.members, args.connections, sample)
                    runs.append((seconds, time.process_time() - cpu))
                    assert sink.count() == args.members
                    sink.clear()
            close_connections(rt)
            engine.dispose()
    finally:
        sink.close()

    ours, ours_cpu = statistics.median(r[0] for r in ours_runs), statistics.median(r[1] for r in ours_runs)
    raw, raw_cpu = statistics.median(r[0] for r in raw_runs), statistics.median(r[1] for r in raw_runs)
    aio, aio_cpu = statistics.median(r[0] for r in aio_runs), statistics.median(r[1] for r in aio_runs)
    bench_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"members={args.members} connections={args.connections} message={len(sample)} bytes "
          f"rounds={args.rounds} (medians)")
    print(f"deliver_pending:     {ours:.2f} s  {args.members / ours:.0f} msg/s  (CPU {ours_cpu:.2f} s)")
    print(f"bare aiosmtplib:     {aio:.2f} s  {args.members / aio:.0f} msg/s  (CPU {aio_cpu:.2f} s)")
    print(f"bare smtplib:        {raw:.2f} s  {args.members / raw:.0f} msg/s  (CPU {raw_cpu:.2f} s)")
    print(f"ratio vs aiosmtplib: {aio / ours:.2f} (target >= {RATIO_TARGET})")
    print(f"ratio vs smtplib:    {raw / ours:.2f}")
    print(f"peak RSS of binrelay's part: {ours_peak_mb:.0f} MB (target <= {RSS_TARGET_MB} MB; "
          f"the whole bench with its baselines: {bench_peak_mb:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
