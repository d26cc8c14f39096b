"""The long-running process.

One pass = ingest every source, route what was stored, run due jobs. Between
passes the main thread waits for mail (IDLE or polling) on an event that a
signal, the scheduler or the delivery thread can set. Delivery runs in its
own thread so a 10,000-member fan-out never delays ingest. SIGTERM sets a stop
flag: the current message finishes, then everything stops cleanly. SIGHUP
reloads the rules and the member table.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from relay.approvals.timers import run_due
from relay.approvals.timers import schedule as schedule_approvals
from relay.config import load_config
from relay.delivery.digest import digest_due, send_digests
from relay.delivery.sender import close_connections, deliver_pending
from relay.ingest.imap import ImapSource
from relay.ingest.lmtp import LmtpServer, start_lmtp
from relay.ingest.maildir import MaildirSource
from relay.ingest.source import MailSource
from relay.ingest.store import Ingestor
from relay.jobs.report import send_monthly
from relay.jobs.retention import purge
from relay.routing.pipeline import route_pending
from relay.service import sdnotify
from relay.service.clock import Clock, SystemClock
from relay.service.logsetup import use_zone
from relay.service.runtime import Runtime, build_runtime, make_classifier
from relay.service.templating import Templates
from relay.service.tokens import signer_for
from relay.service.workers import Presence, claim_job
from storage.db import make_engine, migrate, transaction
from storage.status import record_source_pass

log = logging.getLogger("binrelay.daemon")

IDLE_WAIT_SECONDS = 30.0
DELIVERY_WAIT_SECONDS = 5.0
MAX_ONCE_ROUNDS = 10  # run --once: ingest-route-deliver rounds while each still finds work


@dataclass
class PassResult:
    stored: int = 0
    routed: int = 0
    failed: int = 0
    sent: int = 0
    problems: list[str] = field(default_factory=list)  # what failed (run --once exits 1)


@dataclass
class Daemon:
    config_path: Path
    clock: Clock = field(default_factory=SystemClock)
    engine: Engine | None = None
    runtime: Runtime | None = None
    sources: list[MailSource] = field(default_factory=list)
    ingestor: Ingestor | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    wake_event: threading.Event = field(default_factory=threading.Event)
    reload_requested: bool = False

    # -- building ---------------------------------------------------------
    def build(self) -> Runtime:
        config = load_config(self.config_path)
        use_zone(ZoneInfo(config.delivery.timezone))  # log times as people there read them
        self.engine = make_engine(config.database.url)
        migrate(self.engine)
        self.runtime = build_runtime(config, self.engine, self.clock)
        ingestor = Ingestor(self.runtime.sessions, self.clock, config.limits.max_message_bytes)
        self.ingestor = ingestor
        self.sources = build_sources(self.runtime, ingestor)
        return self.runtime

    def reload(self) -> None:
        """SIGHUP: rules, templates and members are read again."""
        assert self.runtime is not None
        config = self.runtime.config
        self.runtime.classifier = make_classifier(config)
        self.runtime.templates = Templates(config)
        self.runtime.signer = signer_for(config)  # a rotated key file is read again
        log.info("reloaded rules and members")

    def close(self) -> None:
        """End every session this process holds: mailboxes, SMTP (QUIT), the database pool."""
        for source in self.sources:
            source.close()
        if self.runtime is not None:
            close_connections(self.runtime)
        if self.engine is not None:
            self.engine.dispose()

    # -- one pass ---------------------------------------------------------
    def run_pass(self) -> PassResult:
        assert self.runtime is not None
        result = PassResult()
        for source in self.sources:
            if self.stop_event.is_set():
                break
            result.stored += source.run_once()
            self._note_pass(source)
        routed = route_pending(self.runtime, stop=self.stop_event)
        result.routed, result.failed = routed.routed, routed.failed
        return result

    def run_once(self) -> PassResult:
        """``binrelay run --once``: ingest, route, timers, digests, retention and delivery until nothing is due.

        Every failure of a source, the database or the SMTP server is kept in
        ``problems`` (the command exits 1 with them); the other steps still run.
        The monthly report is the daemon's schedule or ``report --send``.
        """
        assert self.runtime is not None
        rt = self.runtime
        result = PassResult()
        for _ in range(MAX_ONCE_ROUNDS):
            before = (result.stored, result.routed, result.sent)
            for source in self.sources:
                self._drain(source, result)
            self._step(result, "routing", lambda: self._route(rt, result))
            self._step(result, "reminders", lambda: run_due(rt))
            self._step(result, "digests", self._digests)
            self._step(result, "retention", self._purge)
            self._step(result, "delivery", lambda: self._deliver(rt, result))
            if result.problems or (result.stored, result.routed, result.sent) == before:
                break
        return result

    def _drain(self, source: MailSource, result: PassResult) -> None:
        """Everything the source has now (a source reads a flood in several calls)."""
        while (stored := source.run_once()) and source.last_error is None:
            result.stored += stored
        self._note_pass(source)
        if source.last_error is not None:
            result.problems.append(source.last_error)

    def _note_pass(self, source: MailSource) -> None:
        """For ``binrelay status``: when the source last read its mailbox, and why it could not since."""
        assert self.runtime is not None
        try:
            with transaction(self.runtime.sessions) as session:
                record_source_pass(session, source.label, source.last_error, self.clock.now())
        except Exception:  # the database is down: the pass itself reports that
            log.debug("could not note the pass of %s", source.label, exc_info=True)

    @staticmethod
    def _route(rt: Runtime, result: PassResult) -> None:
        routed = route_pending(rt)
        result.routed += routed.routed
        result.failed += routed.failed

    @staticmethod
    def _deliver(rt: Runtime, result: PassResult) -> None:
        stats = deliver_pending(rt)
        result.sent += stats.sent
        if stats.unreachable is not None:
            result.problems.append(f"SMTP server unreachable: {stats.unreachable}")

    @staticmethod
    def _step(result: PassResult, name: str, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as error:  # the database, most likely: report it, run the other steps
            log.exception("%s failed", name)
            result.problems.append(f"{name} failed: {type(error).__name__}: {error}")

    # -- forever ------------------------------------------------------------
    def run_forever(self) -> None:
        assert self.runtime is not None
        self._install_signals()
        self.runtime.presence = Presence(self.runtime).start()
        scheduler = self._start_scheduler()
        delivery = threading.Thread(target=self._delivery_loop, name="delivery", daemon=True)
        delivery.start()
        lmtp = self._start_lmtp()
        ready = False
        try:
            while not self.stop_event.is_set():
                if self.reload_requested:
                    self.reload_requested = False
                    self.reload()
                result = self.run_pass()
                if not ready:
                    sdnotify.notify("READY=1")
                    ready = True
                sdnotify.notify("WATCHDOG=1")
                if result.routed:
                    self.wake_event.set()  # decisions may have queued deliveries
                    self._kick_delivery()
                    continue
                self._wait_for_mail()
        finally:
            sdnotify.notify("STOPPING=1")
            log.info("stopping")
            self.stop_event.set()
            self._kick_delivery()
            scheduler.shutdown(wait=False)
            delivery.join(timeout=30)
            if lmtp is not None:
                lmtp.stop()
            self.runtime.presence.stop()
            self.runtime.presence = None

    def _wait_for_mail(self) -> None:
        self.wake_event.clear()
        timeout = min(IDLE_WAIT_SECONDS, sdnotify.watchdog_interval() or IDLE_WAIT_SECONDS)
        if self.sources:
            self.sources[0].wait_for_mail(timeout, self.wake_event)
        else:
            self.wake_event.wait(timeout)

    def _start_lmtp(self) -> LmtpServer | None:
        """The optional LMTP listener (store before 250); new mail wakes the main loop."""
        assert self.runtime is not None
        if not self.runtime.config.lmtp.enabled:
            return None

        assert self.ingestor is not None
        return start_lmtp(self.runtime.config.lmtp, self.ingestor, arrived=self.wake_event)

    # -- delivery thread ----------------------------------------------------
    _delivery_kick: threading.Event = field(default_factory=threading.Event)

    def _kick_delivery(self) -> None:
        self._delivery_kick.set()

    def _delivery_loop(self) -> None:
        assert self.runtime is not None
        while not self.stop_event.is_set():
            self._delivery_kick.clear()
            try:
                deliver_pending(self.runtime, stop=self.stop_event)
            except Exception:
                log.exception("delivery pass failed; retrying")
            self._delivery_kick.wait(DELIVERY_WAIT_SECONDS)

    # -- scheduler and signals ----------------------------------------------
    def _start_scheduler(self) -> BackgroundScheduler:
        assert self.runtime is not None
        scheduler = BackgroundScheduler(timezone="UTC")
        schedule_approvals(scheduler, self.runtime)
        scheduler.add_job(
            self._guarded(self._purge), "cron", hour=3, minute=17, id="retention",
            coalesce=True, max_instances=1,
        )
        scheduler.add_job(
            self._guarded(self._digests), "cron", minute=0, id="digests",
            coalesce=True, max_instances=1,
        )
        scheduler.add_job(
            self._guarded(self._monthly_report), "cron", day=1, hour=8, id="monthly_report",
            coalesce=True, max_instances=1,
        )
        # Reminders, digests and reports enqueue mail: let delivery pick it up at once.
        scheduler.add_job(self._kick_delivery, "interval", seconds=30, id="kick", coalesce=True)
        scheduler.start()
        return scheduler

    def _digests(self) -> None:
        assert self.runtime is not None
        if digest_due(self.runtime):
            send_digests(self.runtime)  # at most one per member per day, however often called

    def _monthly_report(self) -> None:
        assert self.runtime is not None
        send_monthly(self.runtime)

    def _purge(self) -> None:
        assert self.runtime is not None
        now = self.clock.now()
        if claim_job(self.runtime, "retention", now.date().isoformat()):  # one process a day
            purge(self.runtime, now)

    @staticmethod
    def _guarded(job: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                job()
            except Exception:
                log.exception("scheduled job %s failed", job.__name__)

        return run

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping after the current message", signal.Signals(signum).name)
        self.stop_event.set()
        self.wake_event.set()

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_requested = True
        self.wake_event.set()


def build_sources(rt: Runtime, ingestor: Ingestor) -> list[MailSource]:
    config = rt.config
    sources: list[MailSource] = []
    if config.imap is not None:
        sources.append(ImapSource(config.imap, ingestor, rt.sessions, rt.clock))
    if config.maildir is not None:
        sources.append(MaildirSource(config.maildir, ingestor))
    return sources
