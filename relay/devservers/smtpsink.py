"""A recording SMTP server on loopback, with fault injection.

``RecordingSink`` runs aiosmtpd in its own thread and event loop on a port the
OS chose on 127.0.0.1 and keeps every accepted message as
``(mail_from, rcpt_tos, raw)``. Tests, ``bench/`` and ``binrelay demo`` send
real SMTP to it. Optional AUTH (PLAIN/LOGIN), STARTTLS or implicit TLS (a
self-signed certificate made at start, see ``cafile``) exercise those client
paths. It offers PIPELINING like Postfix (``pipelining=False``: a server that
does not).

Faults, settable while it runs (thread-safe):

- ``reject(address, "450 4.2.1 busy", times=2)``: answer RCPT for that address
  with the reply (``times=None``: for ever);
- ``drop_after_data(times=1)``: accept and record the message, then close the
  connection without a reply (the client cannot know it arrived);
- ``close_after(n)``: in every session, answer the MAIL after ``n`` messages
  with ``421`` and close (a server shutting down mid-session);
- ``data_delay``: seconds to stall before answering DATA;
- ``hang_up()``: close every open session now (an idle timeout).

    with RecordingSink() as sink:
        ... send to 127.0.0.1:sink.port ...
        sink.wait_for(3, timeout=5)
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
CERT_DAYS = 2


@dataclass
class _Rejection:
    reply: str
    remaining: int | None  # None: for ever


@dataclass
class SinkStats:
    sessions: int = 0
    dropped: int = 0
    closed_421: int = 0
    rejected: int = 0


@dataclass
class _Faults:
    rejections: dict[str, _Rejection] = field(default_factory=dict)
    drops: int = 0
    close_after: int | None = None
    data_delay: float = 0.0


class _Handler:
    """aiosmtpd hooks: they return the status line; the sink decides faults."""

    def __init__(self, sink: RecordingSink) -> None:
        self._sink = sink

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self._sink._lock:
            self._sink.stats.sessions += 1
            if server.transport is not None:
                self._sink._open.add(server.transport)
        if self._sink._pipelining:
            # aiosmtpd reads commands one after another, so pipelined ones are answered in order;
            # it writes each reply on its own, so Nagle's algorithm must not hold the second back
            # for the client's delayed ACK (40 ms): Postfix sends a group's replies together instead.
            sock = server.transport.get_extra_info("socket") if server.transport is not None else None
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        limit = self._sink._faults.close_after
        done = getattr(session, "binrelay_count", 0)
        if limit is not None and done >= limit:
            with self._sink._lock:
                self._sink.stats.closed_421 += 1
            transport = server.transport
            if transport is not None:
                asyncio.get_running_loop().call_soon(transport.close)
            return "421 4.3.2 Service shutting down, closing channel"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self._sink._take_rejection(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        delay = self._sink._faults.data_delay
        if delay > 0:
            await asyncio.sleep(delay)
        raw = envelope.original_content or b""
        self._sink._record(str(envelope.mail_from), list(envelope.rcpt_tos), raw)
        session.binrelay_count = getattr(session, "binrelay_count", 0) + 1  # type: ignore[attr-defined]
        if self._sink._take_drop():
            transport = server.transport
            if isinstance(transport, asyncio.Transport):
                transport.abort()  # no reply: the client sees a lost connection
        return "250 Message accepted for delivery"


class _Authenticator:
    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            login = data.login.decode("utf-8", "replace")
            if self._users.get(login) == data.password.decode("utf-8", "replace"):
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)


class _Controller(Controller):
    """aiosmtpd's Controller on a socket bound before start (port 0: the OS chooses)."""

    def __init__(self, handler: _Handler, sock: socket.socket, **kwargs: Any) -> None:
        self._sock = sock
        super().__init__(handler, hostname=HOST, port=sock.getsockname()[1], **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class RecordingSink:
    """An SMTP server on 127.0.0.1 that records what it accepts."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        starttls: bool = False,
        require_tls: bool = False,
        implicit_tls: bool = False,
        keep_bytes: bool = True,
        smtputf8: bool = True,
        pipelining: bool = True,
    ) -> None:
        self._pipelining = pipelining  # offered, as Postfix does (RFC 2920)
        self._users = dict(users or {})
        self._smtputf8 = smtputf8  # False: a server that cannot take internationalised addresses
        self._implicit_tls = implicit_tls  # TLS from the first byte (port 465 style)
        self._keep_bytes = keep_bytes  # False: record envelopes only (benchmarks)
        self._starttls = starttls or require_tls
        self._require_tls = require_tls
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._messages: list[tuple[str, list[str], bytes]] = []
        self._faults = _Faults()
        self.stats = SinkStats()
        self._open: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()  # sessions that said EHLO
        self._controller: _Controller | None = None
        self._tempdir: Path | None = None
        self.cafile: Path | None = None
        self.port = 0

    # -- life cycle ---------------------------------------------------------

    def start(self) -> Self:
        kwargs: dict[str, Any] = {"data_size_limit": 64 * 1024 * 1024, "enable_SMTPUTF8": self._smtputf8}
        if self._users:
            kwargs["authenticator"] = _Authenticator(self._users)
            kwargs["auth_require_tls"] = self._starttls and not self._implicit_tls
        else:
            kwargs["auth_require_tls"] = False
        if self._implicit_tls:
            kwargs["ssl_context"] = self._make_tls_context()
        elif self._starttls:
            kwargs["tls_context"] = self._make_tls_context()
            kwargs["require_starttls"] = self._require_tls
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, 0))
        self._controller = _Controller(_Handler(self), sock, **kwargs)
        self.port = sock.getsockname()[1]
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _make_tls_context(self) -> ssl.SSLContext:
        self._tempdir = Path(tempfile.mkdtemp(prefix="binrelay-smtpsink-"))
        cert, key = self._tempdir / "cert.pem", self._tempdir / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(CERT_DAYS),
             "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True, timeout=30,
        )
        self.cafile = cert
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    # -- what arrived ---------------------------------------------------------

    @property
    def messages(self) -> list[tuple[str, list[str], bytes]]:
        """A copy of every accepted message: (mail_from, rcpt_tos, raw)."""
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``count`` messages arrived; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._arrived.wait(left)
            return True

    def _record(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
        with self._arrived:
            self._messages.append((mail_from, rcpt_tos, raw if self._keep_bytes else b""))
            self._arrived.notify_all()

    # -- faults ---------------------------------------------------------------

    def reject(self, address: str, reply: str, times: int | None = None) -> None:
        """Answer RCPT TO ``address`` with ``reply`` (e.g. ``"550 5.1.1 no such user"``)."""
        with self._lock:
            self._faults.rejections[address.lower()] = _Rejection(reply, times)

    def drop_after_data(self, times: int = 1) -> None:
        with self._lock:
            self._faults.drops += times

    def close_after(self, messages: int | None) -> None:
        with self._lock:
            self._faults.close_after = messages

    @property
    def data_delay(self) -> float:
        return self._faults.data_delay

    @data_delay.setter
    def data_delay(self, seconds: float) -> None:
        with self._lock:
            self._faults.data_delay = seconds

    def clear_faults(self) -> None:
        with self._lock:
            self._faults = _Faults()

    def hang_up(self) -> None:
        """Close every open session without a word, as a server's idle timeout does."""
        assert self._controller is not None
        with self._lock:
            transports = list(self._open)
        for transport in transports:
            self._controller.loop.call_soon_threadsafe(transport.close)

    def _take_rejection(self, address: str) -> str | None:
        with self._lock:
            key = address.lower()
            rejection = self._faults.rejections.get(key)
            if rejection is None:
                return None
            if rejection.remaining is not None:
                rejection.remaining -= 1
                if rejection.remaining <= 0:
                    del self._faults.rejections[key]
            self.stats.rejected += 1
            return rejection.reply

    def _take_drop(self) -> bool:
        with self._lock:
            if self._faults.drops <= 0:
                return False
            self._faults.drops -= 1
            self.stats.dropped += 1
            return True


class SinkProcess:
    """``python -m relay.devservers.smtpsink`` in a child process: a sink that does not share the
    caller's GIL (benchmarks); it keeps envelopes only and answers ``count`` and ``clear``."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "relay.devservers.smtpsink"], cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())

    def _ask(self, command: str) -> int:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return int(self._process.stdout.readline())

    def count(self) -> int:
        return self._ask("count")

    def clear(self) -> None:
        self._ask("clear")

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=10)


def main() -> None:
    """``python -m relay.devservers.smtpsink``: serve until stdin closes; print the port, then counts."""
    with RecordingSink(keep_bytes=False) as sink:
        print(sink.port, flush=True)
        for line in sys.stdin:
            if line.strip() == "count":
                print(len(sink.messages), flush=True)
            elif line.strip() == "clear":
                sink.clear()
                print(0, flush=True)


if __name__ == "__main__":
    main()
