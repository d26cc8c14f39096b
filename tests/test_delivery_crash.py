"""Delivery across crashes and processes, against the real sink.

A child process (this module run with ``--child``) delivers until the outbox
is empty. The crash test SIGKILLs it several times mid-fan-out and restarts it:
every member must get the alert, and duplicates per crash stay within the
in-flight limit. The PostgreSQL test runs three children at once on one
outbox: every row is sent exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from relay.config import Config
from relay.delivery.alerts import publish_alert
from relay.delivery.sender import deliver_pending, in_flight_limit
from relay.devservers.smtpsink import RecordingSink
from relay.service.clock import FrozenClock, SystemClock
from relay.service.runtime import build_runtime
from storage.db import make_engine, migrate, session_factory
from storage.models import Delivery
from storage.outbox import pending_count
from tests.delivery_world import add_members, approved_item, make_config, report_bytes

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = 2
# The default lease: a restarted child must take over a killed one's rows at
# once (the dead process's worker is noticed), never by waiting the lease out.
CRASH_LEASE_SECONDS = 300.0
SHARED_LEASE_SECONDS = 300.0
CHILD_DEADLINE_S = 120


def child_config(port: int, db_url: str, lease: float = CRASH_LEASE_SECONDS) -> Config:
    return make_config(port, db_url, batch_size=100, claim_lease_seconds=lease)


def run_child(port: int, db_url: str, lease: float) -> int:
    """Deliver until nothing is pending (waiting out dead processes' leases)."""
    config = child_config(port, db_url, lease)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    rt = build_runtime(config, sessions, SystemClock())
    deadline = time.monotonic() + CHILD_DEADLINE_S
    while time.monotonic() < deadline:
        deliver_pending(rt)
        with sessions() as session:
            if pending_count(session) == 0:
                return 0
        time.sleep(0.1)
    return 1


def start_child(port: int, db_url: str, lease: float = CRASH_LEASE_SECONDS) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.test_delivery_crash", "--child", str(port), db_url, str(lease)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def prepare(db_url: str, port: int, members: int) -> list[str]:
    engine = make_engine(db_url)
    migrate(engine)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    rt = build_runtime(child_config(port, db_url), sessions, FrozenClock(now))
    with sessions() as session, session.begin():
        created = add_members(session, "maaspoort", members, now)
        addresses = [m.email for m in created]
        item = approved_item(session, now, raw=report_bytes())
        publish_alert(rt, session, item, decided_by="anna@example.org", now=now)
    engine.dispose()
    return addresses


def received(sink: RecordingSink) -> Counter[str]:
    return Counter(rcpts[0] for _, rcpts, _ in sink.messages)


def all_sent(db_url: str) -> bool:
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            rows = list(session.scalars(select(Delivery.status)))
            return bool(rows) and all(status == "sent" for status in rows)
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sigkill_and_restart_loses_nothing_and_doubles_little(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'crash.db'}"
    kills = 4
    rng = random.Random(7)
    with RecordingSink() as sink:
        sink.data_delay = 0.002  # a realistic relay, so the kills land mid-fan-out
        members = prepare(db_url, sink.port, 2000)
        for _ in range(kills):
            before = len(sink.messages)
            child = start_child(sink.port, db_url)
            # Kill only once it is sending, never after it finished.
            deadline = time.monotonic() + 30
            while len(sink.messages) < before + 50 and time.monotonic() < deadline and child.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.05, 0.4))
            assert child.poll() is None, "the child finished before it could be killed: more members needed"
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        final = start_child(sink.port, db_url)
        _, stderr = final.communicate(timeout=CHILD_DEADLINE_S + 30)
        assert final.returncode == 0, stderr.decode(errors="replace")[-2000:]
        counts = received(sink)
    assert set(counts) == set(members)  # every member got the alert
    duplicates = sum(n - 1 for n in counts.values())
    assert duplicates <= kills * in_flight_limit(CONNECTIONS)
    assert all_sent(db_url)


@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_three_processes_share_one_postgres_outbox(postgres_url: str) -> None:
    with RecordingSink() as sink:
        sink.data_delay = 0.002
        members = prepare(postgres_url, sink.port, 900)
        children = [start_child(sink.port, postgres_url, SHARED_LEASE_SECONDS) for _ in range(3)]
        for child in children:
            _, stderr = child.communicate(timeout=CHILD_DEADLINE_S + 30)
            assert child.returncode == 0, stderr.decode(errors="replace")[-2000:]
        counts = received(sink)
    assert set(counts) == set(members)
    assert max(counts.values()) == 1  # nobody got it twice
    assert sink.stats.sessions >= 2 * CONNECTIONS  # at least two processes took part
    assert all_sent(postgres_url)
    engine = make_engine(postgres_url)
    with session_factory(engine)() as session:
        workers = {w for (w,) in session.execute(select(Delivery.claimed_by))}
    engine.dispose()
    assert workers == {None}


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "--child":
    sys.exit(run_child(int(sys.argv[2]), sys.argv[3], float(sys.argv[4])))
