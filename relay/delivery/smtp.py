"""Sending over SMTP: the connection factories and a pool of reused connections.

The fan-out uses smtplib, one reused connection per sender thread
(``config.smtp.connections`` of them): the per-message cost is Python protocol
code, smtplib's is lean, and sockets release the GIL while waiting
(bench/fanout.py compares it with bare aiosmtplib and bare smtplib senders).
The database marks are written by a separate thread (see ``sender``), so no
sender thread waits for a commit.

Pipelining (RFC 2920): where the server offers it (Postfix does), MAIL, RCPT
and DATA go in one write and their three replies are read together, so a
message costs two round trips instead of four; smtplib's ``sendmail`` never
pipelines. Connections outlive a delivery pass (``SmtpPool`` is kept by the
runtime, see ``sender``): one the server closed meanwhile is seen before use
(something to read between transactions), one idle longer than
``IDLE_CHECK_SECONDS`` must answer NOOP, and either is reopened.

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
import select
import smtplib
import ssl
import threading
import time
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


# A connection unused this long is also checked with NOOP before it carries a
# message (a firewall may have forgotten it without a word).
IDLE_CHECK_SECONDS = 30.0


@dataclass
class _Idle:
    client: smtplib.SMTP | None  # None: not connected (yet, or any more)
    since: float = 0.0  # time.monotonic() when it was last handed back


class SmtpPool:
    """``size`` reused connections; ``send`` (thread-safe) borrows one for one message.

    A connection that failed (421, drop, timeout) is closed and reopened on its
    next use; one that only had a recipient refused is kept (after RSET). The
    pool may be kept between delivery passes (``close`` ends every session).
    """

    def __init__(self, cfg: SmtpConfig, size: int | None = None) -> None:
        self._cfg = cfg
        self.size = size or cfg.connections
        self._idle: queue.LifoQueue[_Idle] = queue.LifoQueue()
        for _ in range(self.size):
            self._idle.put(_Idle(None))
        self._lock = threading.Lock()
        self.connects = 0

    @property
    def config(self) -> SmtpConfig:
        return self._cfg

    def send(self, sender: str, recipient: str, raw: bytes) -> SendResult:
        client = self._fresh(self._idle.get())
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
            self._idle.put(_Idle(client, time.monotonic()))

    @staticmethod
    def _fresh(idle: _Idle) -> smtplib.SMTP | None:
        """The borrowed connection, if it is still open.

        Servers close idle sessions (Postfix after 300 s, with or without a 421):
        a session with anything to read between transactions is closed, and one
        idle a while must answer NOOP; a message sent into a closed one would
        count as a failed try.
        """
        client = idle.client
        if client is None:
            return None
        try:
            if not _readable(client) and (time.monotonic() - idle.since < IDLE_CHECK_SECONDS
                                          or client.noop()[0] == 250):
                return client
        except (smtplib.SMTPException, OSError):
            pass
        client.close()
        return None

    def close(self) -> None:
        for _ in range(self.size):
            _close(self._idle.get().client)
        for _ in range(self.size):
            self._idle.put(_Idle(None))


def _readable(client: smtplib.SMTP) -> bool:
    """Whether the server said something unasked (a 421, or closed): nothing is due between transactions."""
    sock = client.sock
    if sock is None:
        return True
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    return bool(select.select([sock], [], [], 0)[0])


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
    mail_from, rcpt_to = f"MAIL FROM:<{sender}>{size}{utf8}", f"RCPT TO:<{recipient}>"
    if client.has_extn("pipelining"):
        _pipelined(client, sender, recipient, mail_from, rcpt_to, raw)
        return
    code, reply = client.docmd(mail_from)
    if code != 250:
        _abort(client, code)
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    code, reply = client.docmd(rcpt_to)
    if code not in (250, 251):
        _abort(client, code)
        raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    code, reply = client.data(raw)
    if code != 250:
        _abort(client, code)
        raise smtplib.SMTPDataError(code, reply)


def _pipelined(client: smtplib.SMTP, sender: str, recipient: str, mail_from: str, rcpt_to: str,
               raw: bytes) -> None:
    """MAIL, RCPT and DATA in one write (RFC 2920), then the content. Every reply is read before
    anything else is sent, so a refusal leaves the session in step for RSET and the next message;
    after a 421 the server closes, and nothing more is read."""
    client.send(f"{mail_from}\r\n{rcpt_to}\r\nDATA\r\n")
    replies = []
    for _ in range(3):
        replies.append(client.getreply())
        if replies[-1][0] == 421:
            client.close()
            break
    codes = [code for code, _ in replies]
    if codes[0] != 250:
        _after_refusal(client, codes)
        raise smtplib.SMTPSenderRefused(codes[0], replies[0][1], sender)
    if codes[1] not in (250, 251):
        _after_refusal(client, codes)
        raise smtplib.SMTPRecipientsRefused({recipient: replies[1]})
    if codes[2] != 354:
        _after_refusal(client, codes)
        raise smtplib.SMTPDataError(*replies[2])
    client.send(_dot_stuffed(raw))
    code, reply = client.getreply()
    if code != 250:
        _abort(client, code)
        raise smtplib.SMTPDataError(code, reply)


def _after_refusal(client: smtplib.SMTP, codes: list[int]) -> None:
    """Back to a clean session after a refused MAIL or RCPT (the server closed it after a 421)."""
    if 421 in codes:
        return
    if codes[-1] == 354:  # a server that opened DATA all the same: end it empty
        client.send(b".\r\n")
        client.getreply()
    _abort(client, codes[-1])


_LINE_START_DOT = re.compile(rb"(?m)^\.")


def _dot_stuffed(raw: bytes) -> bytes:
    """The content as DATA sends it: leading dots doubled, ended by CRLF "." CRLF (RFC 5321 4.5.2)."""
    stuffed = _LINE_START_DOT.sub(b"..", raw)
    return stuffed + (b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n")


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
