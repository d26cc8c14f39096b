"""The IMAP source: fetch what is new, commit it, only then move it out.

Bookkeeping per mailbox (``MailboxState``): UIDVALIDITY and the last UID
stored. Only UIDs above it are fetched, in batches. After a (re)connect the
UIDs at or below it that are still in the inbox (a crash between commit and
move) are fetched again; the deduplication key makes that harmless. A changed
UIDVALIDITY starts again from UID 1, again without duplicates. Moving uses
MOVE, else COPY + \\Deleted + UID EXPUNGE (UIDPLUS), else COPY + EXPUNGE.
A lost connection, a timeout or a restarted server is logged and retried
with backoff; nothing here raises into the daemon.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence

from imapclient import DELETED, IMAPClient
from sqlalchemy.orm import Session, sessionmaker

from relay.config import ImapConfig
from relay.ingest.folders import ensure as ensure_folder
from relay.ingest.store import Ingestor
from relay.service.backoff import Backoff
from relay.service.clock import Clock
from relay.service.connections import imap_client
from storage.messages import mailbox_state, save_mailbox_state

log = logging.getLogger("binrelay.ingest.imap")

# Errors that mean "the connection or the server is in trouble": retry later.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (OSError, socket.timeout, ssl.SSLError, imaplib.IMAP4.error)
IDLE_SLICE_SECONDS = 0.2  # how quickly a set ``wake`` event ends an IDLE
MAX_ROUNDS_PER_PASS = 5  # searches per run_once; a flood must not starve routing
MAX_FETCH_BYTES = 32 * 1024 * 1024  # per FETCH command, so a batch of big mails fits in memory


class ImapSource:
    def __init__(
        self,
        cfg: ImapConfig,
        ingestor: Ingestor,
        sessions: sessionmaker[Session],
        clock: Clock,
        *,
        backoff: Backoff | None = None,
        max_fetch_bytes: int = MAX_FETCH_BYTES,
    ) -> None:
        if cfg.processed_folder == cfg.mailbox:
            raise ValueError("imap.processed_folder must differ from imap.mailbox")
        self.cfg = cfg
        self.max_fetch_bytes = max_fetch_bytes
        self.ingestor = ingestor
        self.sessions = sessions
        self.clock = clock
        self.backoff = backoff or Backoff(base=1.0, cap=120.0)
        self.name = f"imap://{cfg.username}@{cfg.host}:{cfg.port}/{cfg.mailbox}"
        self.label = f"imap {cfg.host}:{cfg.port}/{cfg.mailbox}"  # for logs: no address
        self.origin = f"imap:{cfg.mailbox}"
        self._client: IMAPClient | None = None
        self._capabilities: frozenset[bytes] = frozenset()
        self._uidvalidity = 0
        self._last_uid = 0
        self._retry_at: float | None = None
        self._stored = 0
        self._backlog = False  # the last pass stopped before the inbox was empty
        self._processed = cfg.processed_folder  # as this server names it (relay.ingest.folders)
        self.last_error: str | None = None

    # -- MailSource -----------------------------------------------------------

    def run_once(self) -> int:
        if self._retry_at is not None and time.monotonic() < self._retry_at:
            return 0
        self._stored = 0
        try:
            if self._client is None:
                self._connect()
            self._drain()
        except NETWORK_ERRORS as error:
            self._lost(f"{type(error).__name__}: {error}")
        except Exception as error:  # e.g. the database is locked: log, back off, go on
            log.exception("%s: ingest failed", self.label)
            self._lost(f"ingest failed: {type(error).__name__}: {error}")
        else:
            self.backoff.reset()
            self._retry_at = None
            self.last_error = None
        return self._stored

    def wait_for_mail(self, timeout: float, wake: threading.Event) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        if self._client is None:
            if self._retry_at is not None:
                wake.wait(max(0.0, min(deadline, self._retry_at) - time.monotonic()))
            return
        if self._backlog:
            return  # the last pass stopped early; IDLE would not announce that mail again
        try:
            if b"IDLE" in self._capabilities:
                self._idle(deadline, wake)
            else:
                wake.wait(max(0.0, min(self.cfg.poll_seconds, deadline - time.monotonic())))
        except NETWORK_ERRORS as error:
            self._lost(f"{type(error).__name__} during IDLE: {error}")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - closing anyway
            client.shutdown()

    # -- connection -------------------------------------------------------------

    def _connect(self) -> None:
        client = imap_client(self.cfg)
        try:
            self._capabilities = frozenset(client.capabilities())
            folder = ensure_folder(client, self.cfg.processed_folder)
            if folder.why.startswith("created"):
                log.info("%s: created folder %s", self.label, folder.name)
            self._processed = folder.name
            status = client.select_folder(self.cfg.mailbox)
        except BaseException:
            client.shutdown()
            raise
        self._client = client
        self._load_state(int(status[b"UIDVALIDITY"]))
        log.info("%s: connected (uidvalidity %s, last uid %s)", self.label, self._uidvalidity, self._last_uid)

    def _lost(self, reason: str) -> None:
        client, self._client = self._client, None
        self._backlog = False
        if client is not None:
            with contextlib.suppress(Exception):  # the socket may already be gone
                client.shutdown()
        delay = self.backoff.next_delay()
        self._retry_at = time.monotonic() + delay
        self.last_error = f"{self.label}: {reason}"
        log.warning("%s: %s; retrying in %.1f s", self.label, reason, delay)

    # -- bookkeeping --------------------------------------------------------------

    def _load_state(self, uidvalidity: int) -> None:
        with self.sessions() as session, session.begin():
            state = mailbox_state(session, self.name)
            if state is not None and state.uidvalidity == uidvalidity:
                self._last_uid = state.last_uid
            else:
                if state is not None:
                    log.warning(
                        "%s: UIDVALIDITY changed (%s -> %s): reading the mailbox again",
                        self.label, state.uidvalidity, uidvalidity,
                    )
                self._last_uid = 0
                save_mailbox_state(
                    session, self.name, uidvalidity=uidvalidity, last_uid=0, now=self.clock.now()
                )
        self._uidvalidity = uidvalidity

    def _save_last_uid(self, last_uid: int) -> None:
        if last_uid <= self._last_uid:
            return
        with self.sessions() as session, session.begin():
            save_mailbox_state(
                session, self.name, uidvalidity=self._uidvalidity, last_uid=last_uid, now=self.clock.now()
            )
        self._last_uid = last_uid

    # -- the work -----------------------------------------------------------------

    def _drain(self) -> None:
        """Store and move what is new; search again until nothing is left (bounded per pass)."""
        assert self._client is not None
        self._client.noop()  # Dovecot shows mail from other sessions on NOOP, not on SEARCH
        if self._last_uid > 0:
            # Anything still here below the last UID (stored before a crash but not moved,
            # missing from a FETCH, shown late by the server) is taken again: one SEARCH,
            # normally empty, and storing is idempotent.
            self._process(self._search(1, self._last_uid))
        self._backlog = False
        for _ in range(MAX_ROUNDS_PER_PASS):
            uids = self._search(self._last_uid + 1, None)
            if not uids:
                return
            for batch in _chunks(uids, self.cfg.fetch_batch):
                self._process(batch)
            self._client.noop()
        self._backlog = True  # mail keeps pouring in: let the daemon route, then come back

    def _search(self, first: int, last: int | None) -> list[int]:
        """UIDs in [first, last] (``N:*`` always matches the highest UID, so filter)."""
        assert self._client is not None
        upper = "*" if last is None else str(last)
        found = self._client.search(["UID", f"{first}:{upper}"])
        return sorted(uid for uid in found if uid >= first and (last is None or uid <= last))

    def _process(self, uids: Sequence[int]) -> None:
        if not uids:
            return
        for group in self._by_size(uids):
            present = self._fetch_and_store(group)
            self._save_last_uid(max(group))  # committed before anything leaves the inbox
            if present:
                self._move(present)

    def _by_size(self, uids: Sequence[int]) -> Iterator[list[int]]:
        """Split ``uids`` so one FETCH returns at most about ``max_fetch_bytes`` (or one message)."""
        assert self._client is not None
        sizes = self._client.fetch(list(uids), ["RFC822.SIZE"])
        group: list[int] = []
        total = 0
        for uid in uids:
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            if group and total + size > self.max_fetch_bytes:
                yield group
                group, total = [], 0
            group.append(uid)
            total += size
        if group:
            yield group

    def _fetch_and_store(self, uids: list[int]) -> list[int]:
        """Fetch and commit each message; returns the UIDs that were there (stored or known)."""
        assert self._client is not None
        response = self._client.fetch(uids, ["BODY.PEEK[]"])
        present: list[int] = []
        batch: list[tuple[bytes, str | None]] = []
        for uid in uids:
            raw = response.get(uid, {}).get(b"BODY[]")
            if raw is None:
                # Expunged by someone else, or not delivered in this response: the next
                # pass looks below the last UID again, so it cannot be left behind.
                log.info("%s: uid %s missing from FETCH; rechecking next pass", self.label, uid)
                continue
            batch.append((bytes(raw), f"{self._uidvalidity}:{uid}"))
            present.append(uid)
        # One commit for the group; only after it do these UIDs leave the inbox.
        results = self.ingestor.store_many(batch, origin=self.origin) if batch else []
        self._stored += sum(result.stored for result in results)
        return present

    def _move(self, uids: list[int]) -> None:
        assert self._client is not None
        folder = self._processed
        if b"MOVE" in self._capabilities:
            self._client.move(uids, folder)
            return
        self._client.copy(uids, folder)
        self._client.add_flags(uids, [DELETED], silent=True)
        if b"UIDPLUS" in self._capabilities:
            self._client.uid_expunge(uids)
        else:
            self._client.expunge()  # expunges every \Deleted message in the inbox

    def _idle(self, deadline: float, wake: threading.Event) -> None:
        assert self._client is not None
        client = self._client
        client.idle()
        idling = True
        started = time.monotonic()
        try:
            while not wake.is_set():
                now = time.monotonic()
                if now >= deadline or now - started >= self.cfg.idle_recheck_seconds:
                    return  # the pass searches the mailbox: a lazy server's news is not waited for
                if now - started >= self.cfg.idle_renew_seconds:
                    # Renewed well inside the 29 minutes of RFC 2177; news that came
                    # with the DONE is not announced again in the next IDLE.
                    idling = False
                    _, pending = client.idle_done()
                    if any(_announces_mail(response) for response in pending):
                        return
                    client.idle()
                    idling = True
                    started = now
                responses = client.idle_check(timeout=min(IDLE_SLICE_SECONDS, deadline - now))
                if _gone(client, responses):
                    idling = False  # no DONE on a dead connection
                    raise ConnectionError("server closed the connection during IDLE")
                if any(_announces_mail(response) for response in responses):
                    return
        finally:
            if idling and self._client is client:
                client.idle_done()


def _gone(client: IMAPClient, responses: list[object]) -> bool:
    """imapclient's idle_check swallows EOF; notice a BYE or a closed socket ourselves."""
    if any(isinstance(r, tuple) and r and r[0] == b"BYE" for r in responses):
        return True
    if responses:
        return False
    sock = client.socket()
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    if not poller.poll(0):
        return False  # nothing to read: the connection is alive
    # Readable yet idle_check read nothing: peek below any TLS layer for the end of stream.
    # (socket.recv would first wait out the socket's timeout; poll said it will not block.)
    try:
        peeked = socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    return peeked == b""


def _announces_mail(response: object) -> bool:
    return isinstance(response, tuple) and len(response) >= 2 and response[1] in (b"EXISTS", b"RECENT")


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
