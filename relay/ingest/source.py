"""Mailbox sources: where incoming mail is read from (IMAP, Maildir).

Every source keeps one promise: a message leaves the mailbox only after its
raw bytes are committed to the database (``relay.ingest.Ingestor``).
"""

from __future__ import annotations

import threading
from typing import Protocol


class MailSource(Protocol):
    name: str  # the state key (it may hold the login)
    label: str  # for logs and status: no address
    # Why the last ``run_once`` could not read the mailbox (for ``run --once``'s exit code); None when it could.
    last_error: str | None

    def run_once(self) -> int:
        """Store everything new (committing each), then move it out; returns how many were stored.

        Never raises on network errors: logs, schedules a retry with backoff, returns.
        """
        ...

    def wait_for_mail(self, timeout: float, wake: threading.Event) -> None:
        """Block until mail may have arrived, ``wake`` is set or ``timeout`` seconds passed."""
        ...

    def close(self) -> None: ...
