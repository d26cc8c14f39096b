"""Sending over SMTP: the connection factories and a pool of reused connections.

The fan-out uses smtplib, one reused connection per sender thread
(``config.smtp.connections`` of them). Measured on loopback (bench/fanout.py),
plain smtplib connections in threads move about 1.6x the messages per second
of aiosmtplib on one event loop: the per-message cost is Python protocol code,
and smtplib's is leaner; sockets release the GIL while waiting. The database
marks are written by a separate thread (see ``sender``), so no sender thread
waits for a commit.

Pipelining: neither smtplib nor aiosmtplib uses PIPELINING (RFC 2920); each
command waits for its reply. With reused connections that is a few round trips
per message, small next to the server's own per-message work on a LAN relay,
and the parallel connections hide it further.

``smtp_connection`` (aiosmtplib) serves ``binrelay check``'s asynchronous login
test; ``open_smtp`` (smtplib) the pool. Both do implicit TLS (``ssl``),
required STARTTLS (never silently skipped) or plain for a local relay, and AUTH
when a username is configured, with ``cfg.password()``.

Every result is classified as the outbox needs it: ``accepted`` (2xx after
DATA), ``temporary`` (4xx, lost connection, timeout: retry later) or
``permanent`` (5xx: this recipient will not take it).
"""

from __future__ import annotations

import logging
import queue
import re
import smtplib
import ssl
import threading
from dataclasses import dataclass, replace
from typing import Literal

import aiosmtplib

from relay.config import SmtpConfig

log = logging.getLogger("binrelay.smtp")

Outcome = Literal["accepted", "temporary", "permanent"]


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    code: int | None = None
    detail: str = ""
    # The server could not be reached or refused the session (connect, TLS,
    # AUTH): nothing about this recipient, so the pass should stop.
    unreachable: bool = False
    # The server refused this recipient at RCPT: only that counts against the member's address.
    recipient_refused: bool = False

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"


ACCEPTED = SendResult("accepted", 250, "")


def tls_context(cfg: SmtpConfig) -> ssl.SSLContext | None:
    if not (cfg.ssl or cfg.starttls):
        return None
    context = ssl.create_default_context()
    if cfg.cafile is not None:
        context.load_verify_locations(cafile=str(cfg.cafile))
    return context


def smtp_connection(cfg: SmtpConfig) -> aiosmtplib.SMTP:
    """An unconnected client for ``cfg``: ``await connect()`` also does STARTTLS and AUTH.

    Implicit TLS (``ssl``), STARTTLS (required, never silently skipped) or plain
    for a local relay; AUTH when a username is configured, with ``cfg.password()``.
    Usable as ``async with smtp_connection(cfg) as client:``.
    """
    username = cfg.username if cfg.username else None
    return aiosmtplib.SMTP(
        hostname=cfg.host,
        port=cfg.port,
        username=username,
        password=(cfg.password() or "") if username else None,
        use_tls=cfg.ssl,
        start_tls=bool(cfg.starttls),  # True: required, never skipped; False: plain
        tls_context=tls_context(cfg),
        timeout=cfg.timeout_seconds,
    )


def open_smtp(cfg: SmtpConfig) -> smtplib.SMTP:
    """A connected (and, with a username, logged-in) smtplib client."""
    context = tls_context(cfg)
    client: smtplib.SMTP
    if cfg.ssl:
        client = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_seconds, context=context)
    else:
        client = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds)
    try:
        client.ehlo()
        if cfg.starttls:
            client.starttls(context=context)
            client.ehlo()
        if cfg.username:
            client.login(cfg.username, cfg.password() or "")
    except BaseException:
        client.close()
        raise
    return client


class NeedsSmtpUtf8(Exception):
    """An internationalised address or header, and a server without SMTPUTF8 (RFC 6531)."""


def classify_error(error: BaseException) -> SendResult:
    """Any exception while sending one message, as the outbox sees it; never raises.

    A refusal of the recipient is the recipient's; anything else (a refused
    sender or content, a protocol error, a bug while encoding) is this one
    message's failure, never a bounce against the member.
    """
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        code = max(codes) if codes else 450
        detail = "; ".join(f"{code} {_text(message)}" for code, message in error.recipients.values())
        outcome: Outcome = "permanent" if 500 <= code < 600 else "temporary"
        return SendResult(outcome, code, detail, recipient_refused=outcome == "permanent")
    if isinstance(error, NeedsSmtpUtf8):
        return SendResult("permanent", None, str(error))
    if isinstance(error, smtplib.SMTPAuthenticationError):
        # A wrong password is the operator's problem, not the recipient's: retry.
        return SendResult("temporary", error.smtp_code, f"authentication failed: {_text(error.smtp_error)}")
    if isinstance(error, smtplib.SMTPResponseException):
        return _by_code(error.smtp_code, _text(error.smtp_error))
    if isinstance(error, smtplib.SMTPException | OSError | TimeoutError):
        return SendResult("temporary", None, f"{type(error).__name__}: {error}")
    if isinstance(error, UnicodeError | ValueError):  # the same bytes fail the same way every time
        return SendResult("permanent", None, f"cannot be encoded for SMTP: {type(error).__name__}: {error}")
    return SendResult("temporary", None, f"internal error: {type(error).__name__}: {error}")


def _text(message: bytes | str) -> str:
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)


def _by_code(code: int, message: str) -> SendResult:
    detail = f"{code} {message}".strip()
    if 500 <= code < 600:
        return SendResult("permanent", code, detail)
    return SendResult("temporary", code, detail)


class SmtpPool:
    """``size`` reused connections; ``send`` (thread-safe) borrows one for one message.

    A connection that failed (421, drop, timeout) is closed and reopened on its
    next use; one that only had a recipient refused is kept (smtplib sent RSET).
    """

    def __init__(self, cfg: SmtpConfig, size: int | None = None) -> None:
        self._cfg = cfg
        self.size = size or cfg.connections
        self._idle: queue.LifoQueue[smtplib.SMTP | None] = queue.LifoQueue()
        for _ in range(self.size):
            self._idle.put(None)
        self._lock = threading.Lock()
        self.connects = 0

    def send(self, sender: str, recipient: str, raw: bytes) -> SendResult:
        client = self._idle.get()
        try:
            if client is None:
                try:
                    client = open_smtp(self._cfg)
                except Exception as error:  # noqa: BLE001 - classified, flagged as unreachable
                    failed = classify_error(error)
                    # "gaierror: Name or service not known" says nothing of which name: say it.
                    return replace(failed, unreachable=True,
                                   detail=f"{self._cfg.host}:{self._cfg.port}: {failed.detail}")
                with self._lock:
                    self.connects += 1
            transfer(client, sender, recipient, raw)
            return ACCEPTED
        except Exception as error:  # noqa: BLE001 - classified below
            result = classify_error(error)
            if client is not None and not _still_open(client, error):
                # Mid-transaction, or in a state we do not know: never hand it to the next message.
                _close(client)
                client = None
            return result
        finally:
            self._idle.put(client)

    def close(self) -> None:
        for _ in range(self.size):
            _close(self._idle.get())
        for _ in range(self.size):
            self._idle.put(None)


_UNSAFE_IN_PATH = re.compile(r"[^\x21-\x7e]|[<>]")


def transfer(client: smtplib.SMTP, sender: str, recipient: str, raw: bytes) -> None:
    """MAIL, RCPT, DATA for one recipient, raising exactly as ``smtplib.SMTP.sendmail`` does.

    ``sendmail`` re-parses both addresses with ``email.utils`` on every call,
    which costs more than the rest of the client's work per message; ours are
    validated already, so plain printable-ASCII addresses go straight into the
    commands (anything else takes ``sendmail``'s road). An internationalised
    address or header goes with SMTPUTF8 (RFC 6531) when the server offers it;
    otherwise ``NeedsSmtpUtf8`` is raised before anything is sent, so the
    session stays clean for the next message.
    """
    client.ehlo_or_helo_if_needed()
    international = not (sender.isascii() and recipient.isascii() and _headers_ascii(raw))
    if international and not client.has_extn("smtputf8"):
        raise NeedsSmtpUtf8("the address is internationalised and the SMTP server offers no SMTPUTF8")
    if _UNSAFE_IN_PATH.search(sender) or _UNSAFE_IN_PATH.search(recipient):
        if not international:
            client.sendmail(sender, [recipient], raw)
            return
        if any(char in sender + recipient for char in "<> \r\n"):
            raise ValueError("an address with spaces or angle brackets")
    size = f" SIZE={len(raw)}" if client.does_esmtp and client.has_extn("size") else ""
    utf8 = " SMTPUTF8 BODY=8BITMIME" if international else ""
    client.command_encoding = "utf-8" if international else "ascii"
    code, reply = client.docmd("MAIL", f"FROM:<{sender}>{size}{utf8}")
    if code != 250:
        _abort(client, code)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    code, reply = client.docmd("RCPT", f"TO:<{recipient}>")
    if code not in (250, 251):
        _abort(client, code)
        raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    code, reply = client.data(raw)
    if code != 250:
        _abort(client, code)
        raise smtplib.SMTPDataError(code, reply)


def _headers_ascii(raw: bytes) -> bool:
    end = raw.find(b"\r\n\r\n")
    return (raw[:end] if end >= 0 else raw).isascii()


def _abort(client: smtplib.SMTP, code: int) -> None:
    """After a refusal: 421 means the server is closing; anything else, reset the transaction."""
    if code == 421:
        client.close()
        return
    try:
        client.rset()
    except smtplib.SMTPServerDisconnected:
        client.close()


def _still_open(client: smtplib.SMTP, error: BaseException) -> bool:
    """Only a refused recipient/sender/data (not 421) leaves a usable session."""
    if client.sock is None:
        return False
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code != 421 for code, _ in error.recipients.values())
    return isinstance(error, smtplib.SMTPResponseException) and error.smtp_code != 421


def _close(client: smtplib.SMTP | None) -> None:
    if client is None:
        return
    try:
        if client.sock is not None:
            client.quit()
    except Exception as error:  # noqa: BLE001 - closing is best effort
        log.debug("SMTP QUIT failed: %s", error)
    finally:
        client.close()
