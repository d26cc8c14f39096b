"""This process as a worker: registered, alive by heartbeat, and quick to free what a dead one held.

Several binrelay processes (on one host or many) share the outbox. Each marks
itself alive every ``HEARTBEAT_SECONDS``; a delivery it claimed counts as its
own only while that heartbeat is fresh (``storage.workers.STALE_AFTER``), so
after a crash another process takes the rows over within seconds. On start a
process also removes the workers of its own host whose process no longer
exists: after ``systemctl restart`` or a watchdog kill, the new process
continues at once. A process sends a claimed row only while its own heartbeat
is fresh, so a stalled one never sends what another may have taken.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from relay.service.clock import Clock
from storage import workers

log = logging.getLogger("binrelay.workers")

HEARTBEAT_SECONDS = 2.0
# A heartbeat this old and this process stops sending: well before others may take its rows.
SEND_WHILE_WITHIN = workers.STALE_AFTER.total_seconds() * 2 / 3


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class Process(Protocol):
    """What this module needs of a runtime (relay.service.runtime.Runtime, which holds a Presence)."""

    sessions: sessionmaker[Session]
    clock: Clock
    worker_id: str
    presence: Presence | None


class Presence:
    """Registers ``rt.worker_id`` and keeps its heartbeat until ``stop``."""

    def __init__(self, rt: Process) -> None:
        self._rt = rt
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = 0.0  # time.monotonic() of the last heartbeat written

    def start(self) -> Presence:
        rt, host = self._rt, socket.gethostname()
        now = rt.clock.now()
        with rt.sessions() as session, session.begin():
            for other in workers.workers_on(session, host):
                if other.id != rt.worker_id and not process_alive(other.pid):
                    workers.unregister(session, other.id)
                    log.info("worker %s on this host is gone; its claims are free", other.id)
            workers.forget_stale(session, now)
            workers.register(session, rt.worker_id, host, os.getpid(), now)
        self._last_beat = time.monotonic()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()
        return self

    def fresh(self) -> bool:
        """Whether this process may still send what it claimed."""
        return time.monotonic() - self._last_beat < SEND_WHILE_WITHIN

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            with self._rt.sessions() as session, session.begin():
                workers.unregister(session, self._rt.worker_id)
        except Exception:  # noqa: BLE001 - stopping anyway; the row goes stale by itself
            log.warning("could not remove this worker's row; it goes stale by itself")

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                with self._rt.sessions() as session, session.begin():
                    alive = workers.heartbeat(session, self._rt.worker_id, self._rt.clock.now())
                    if not alive:  # taken for dead (a long stall): register again
                        workers.register(session, self._rt.worker_id, socket.gethostname(), os.getpid(),
                                         self._rt.clock.now())
                self._last_beat = time.monotonic()
            except Exception:  # noqa: BLE001 - the database is away: sending stops by itself (fresh())
                log.warning("heartbeat failed; claimed mail waits until it succeeds again")


def claim_job(rt: Process, job: str, period: str) -> bool:
    """True in exactly one process per (job, period): that one runs it (its own transaction)."""
    with rt.sessions() as session, session.begin():
        return workers.claim_job(session, job, period, rt.worker_id, rt.clock.now())


@contextmanager
def present(rt: Process) -> Iterator[Presence]:
    """The runtime's presence, or one for the length of this block when none is running."""
    if rt.presence is not None:
        yield rt.presence
        return
    presence = Presence(rt).start()
    try:
        yield presence
    finally:
        presence.stop()
