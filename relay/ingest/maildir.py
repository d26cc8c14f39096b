"""The Maildir source, for operators whose MTA delivers locally.

Each file in ``new/`` and ``cur/`` is read, committed (``Ingestor.store``), and
only then renamed into ``cfg.processed`` (a Maildir of its own, created when
missing; by default the Maildir++ folder ``.Verwerkt`` inside the Maildir), or
deleted when ``cfg.delete_processed`` asks for it. The rename is
made durable with an fsync of both folders. A crash between commit and move
leaves the file in place; the next pass stores nothing twice (deduplication
key) and finishes the move.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from relay.config import MaildirConfig
from relay.ingest.store import Ingestor
from relay.service.backoff import Backoff

log = logging.getLogger("binrelay.ingest.maildir")

POLL_SLICE_SECONDS = 0.25  # how often wait_for_mail looks at the folder's mtime
SUBFOLDERS = ("new", "cur")


class MaildirSource:
    def __init__(self, cfg: MaildirConfig, ingestor: Ingestor, *, backoff: Backoff | None = None) -> None:
        self.cfg = cfg
        self.ingestor = ingestor
        self.backoff = backoff or Backoff(base=1.0, cap=60.0)
        self.root = Path(cfg.path)
        self.processed = None if cfg.delete_processed else _processed_path(self.root, cfg.processed)
        self.name = f"maildir:{self.root}"
        self.label = f"maildir {self.root}"
        self._retry_at: float | None = None
        self.last_error: str | None = None

    # -- MailSource -----------------------------------------------------------

    def run_once(self) -> int:
        if self._retry_at is not None and time.monotonic() < self._retry_at:
            return 0
        stored = 0
        try:
            for path in self._pending():
                stored += self._take(path)
        except OSError as error:
            delay = self._failed(f"{type(error).__name__}: {error}")
            log.warning("%s: %s; retrying in %.1f s", self.name, error, delay)
        except Exception as error:  # e.g. the database is locked: log, back off, go on
            delay = self._failed(f"ingest failed: {type(error).__name__}: {error}")
            log.exception("%s: ingest failed; retrying in %.1f s", self.name, delay)
        else:
            self.backoff.reset()
            self._retry_at = None
            self.last_error = None
        return stored

    def _failed(self, reason: str) -> float:
        """Back off; returns the delay."""
        delay = self.backoff.next_delay()
        self._retry_at = time.monotonic() + delay
        self.last_error = f"{self.name}: {reason}"
        return delay

    def wait_for_mail(self, timeout: float, wake: threading.Event) -> None:
        """Sleep until ``new/`` or ``cur/`` changes, ``wake`` is set or ``timeout`` passed."""
        deadline = time.monotonic() + max(0.0, timeout)
        if self._retry_at is not None:
            deadline = min(deadline, self._retry_at)
        before = self._stamp()
        while not wake.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            wake.wait(min(POLL_SLICE_SECONDS, remaining))
            if self._stamp() != before:
                return

    def close(self) -> None:
        pass

    # -- the work -----------------------------------------------------------------

    def _pending(self) -> list[Path]:
        """Files in new/ and cur/, oldest first."""
        found: list[tuple[int, Path]] = []
        for sub in SUBFOLDERS:
            with os.scandir(self.root / sub) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    try:
                        if entry.is_file():
                            found.append((entry.stat().st_mtime_ns, Path(entry.path)))
                    except FileNotFoundError:
                        continue  # another process took it just now
        return [path for _, path in sorted(found)]

    def _take(self, path: Path) -> int:
        """Store one file, then move it out; returns 1 if it was new."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return 0  # another process took it
        result = self.ingestor.store(raw, origin="maildir", origin_ref=path.name)
        self._move_out(path)
        return int(result.stored)

    def _move_out(self, path: Path) -> None:
        if self.processed is None:
            try:
                path.unlink()
            except FileNotFoundError:
                return
            _fsync_dir(path.parent)
            return
        target_dir = self.processed / "cur"
        _ensure_maildir(self.processed)
        target = _free_name(target_dir / path.name)
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            _copy_across_devices(path, target)
        _fsync_dir(target_dir)
        _fsync_dir(path.parent)

    def _stamp(self) -> tuple[int, ...]:
        stamps = []
        for sub in SUBFOLDERS:
            try:
                stamps.append((self.root / sub).stat().st_mtime_ns)
            except OSError:
                stamps.append(-1)
        return tuple(stamps)


DEFAULT_PROCESSED = ".Verwerkt"  # a Maildir++ subfolder: mail clients show it as "Verwerkt"


def _processed_path(root: Path, processed: Path | None) -> Path:
    if processed is None:
        return root / DEFAULT_PROCESSED
    return processed if processed.is_absolute() else root.parent / processed


def _ensure_maildir(folder: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True, exist_ok=True)


def _free_name(target: Path) -> Path:
    """``target`` or, if a file of that name was processed before, a numbered variant."""
    candidate = target
    number = 1
    while candidate.exists():
        candidate = target.with_name(f"{target.name}.{number}")
        number += 1
    return candidate


def _copy_across_devices(source: Path, target: Path) -> None:
    """Copy via the processed folder's tmp/, fsync, rename into place, then unlink the source."""
    staging = target.parent.parent / "tmp" / target.name
    shutil.copyfile(source, staging)
    with open(staging, "rb") as handle:
        os.fsync(handle.fileno())
    os.rename(staging, target)
    _fsync_dir(target.parent)
    source.unlink()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
