"""Faults around binrelay that recover by themselves: a locked database, a flood.

(Dovecot killed in FETCH and IDLE and a cutting proxy: tests/test_imap_source.py;
SMTP drops, 421 and stalls: tests/test_delivery_send.py; crashes of ingest and
delivery: the SIGKILL tests there.)
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from relay.devservers.stack import LoopbackStack, compose
from storage.models import Message, QueueItem
from tests.e2e import ANNA, MAASPOORT

HOLD_LOCK = textwrap.dedent(
    """
    import sqlite3, sys, time
    connection = sqlite3.connect(sys.argv[1], isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    connection.execute("COMMIT")
    """
)


@pytest.mark.slow
@pytest.mark.dovecot
def test_database_locked_for_ten_seconds_by_another_process(stack: LoopbackStack) -> None:
    stack.mail_in(compose(sender=MAASPOORT[0], subject="inbraak", body="Ingebroken in de schuur aan de Marathonloop."))
    database = Path(str(stack.workdir / "binrelay.db"))
    locker = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(database), "10"], stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        errors: list[BaseException] = []

        def one_pass() -> None:
            try:
                stack.run_once()
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        started = time.monotonic()
        worker = threading.Thread(target=one_pass)
        worker.start()
        worker.join(timeout=90)
        assert not worker.is_alive()
        assert errors == [], errors
    finally:
        locker.wait(timeout=30)
    stack.run_once()  # whatever waited is finished now
    assert time.monotonic() - started >= 9  # it really waited for the lock
    assert len(stack.approval_requests(ANNA)) == 1
    assert stack.daemon is not None and stack.daemon.runtime is not None
    with stack.daemon.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 1


@pytest.mark.slow
@pytest.mark.dovecot
def test_a_flood_is_stored_limited_summarised_and_does_not_delay_others(stack: LoopbackStack) -> None:
    flooder = "flood@elders.nl"
    flood = [
        compose(sender=flooder, subject=f"melding {n}", body=f"Er is iets aan de hand, bericht nummer {n}.")
        for n in range(2000)
    ]
    stack.dovecot.deliver_many(stack.mailbox_user, flood)
    stack.mail_in(compose(sender=MAASPOORT[0], subject="inbraak schuur",
                          body="Vannacht ingebroken in de schuur aan de Marathonloop."))
    assert stack.daemon is not None and stack.daemon.runtime is not None
    for source in stack.daemon.sources:
        while source.run_once():
            pass
    from relay.routing.pipeline import route_pending

    # The first routing batch already reaches the neighbour: senders take turns.
    route_pending(stack.daemon.runtime, limit=100)
    with stack.daemon.runtime.sessions() as session:
        neighbour = session.scalars(select(Message).where(Message.from_address == MAASPOORT[0])).one()
        assert neighbour.status == "held"
    while route_pending(stack.daemon.runtime).routed:
        pass
    stack.run_once()

    with stack.daemon.runtime.sessions() as session:
        stored = session.scalar(select(func.count()).select_from(Message).where(Message.from_address == flooder))
        items = session.scalar(select(func.count()).select_from(QueueItem).where(QueueItem.source == "unknown"))
        summaries = session.scalar(
            select(func.count()).select_from(QueueItem).where(QueueItem.kind == "flood_summary")
        )
    assert stored == 2000  # nothing lost
    limit = stack.daemon.runtime.config.limits.sender_messages_per_hour
    assert items == limit + 1  # the first `limit` each, then one summary for the rest
    assert summaries == 1
    requests = stack.sent_to("kees@coordinatoren.nl")  # unknown senders without ward: network-wide
    # At most one request per item (repeats of one text refresh their group's request only now and
    # then), and one summary instead of 2,000 requests.
    assert len(requests) <= limit + 1, "one summary instead of 2,000 requests"
