"""Logging an operator can use: one line per event, to stderr (journald)."""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime, tzinfo

LEVELS = ("debug", "info", "warning", "error")


class ZonedFormatter(logging.Formatter):
    """Times in the network's time zone with their offset (one time rule: what people read is local)."""

    zone: tzinfo | None = None  # None: the machine's

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, self.zone or datetime.now().astimezone().tzinfo)
        return moment.isoformat(timespec="seconds")


def use_zone(zone: tzinfo) -> None:
    """Show log times in ``zone`` from now on (the configuration names it; it is read after logging starts)."""
    ZonedFormatter.zone = zone


def configure_logging(level: str = "info") -> None:
    # Under journald (JOURNAL_STREAM set) the journal adds its own timestamps.
    if os.environ.get("JOURNAL_STREAM"):
        fmt = "%(levelname)s %(name)s: %(message)s"
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ZonedFormatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries speak at WARNING unless we debug.
    for noisy in ("apscheduler", "imapclient", "mail.log", "aiosmtpd", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)


def log_to_file(path: str | os.PathLike[str], level: str = "info") -> None:
    """Send every log line to ``path`` instead of stderr (the demo narrates; its log is a file it names)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(ZonedFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
