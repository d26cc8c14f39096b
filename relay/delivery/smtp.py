"""Sending over SMTP: one connection factory and a pool of reused connections.

Why aiosmtplib on one event loop rather than smtplib in threads: the fan-out is
I/O bound, and one loop drives ``connections`` sessions concurrently without a
thread per connection or locks around shared state; marking rows sent (a
database write) is handed to a worker thread so it never stalls the loop.

Pipelining: neither aiosmtplib nor smtplib uses PIPELINING (RFC 2920); each
command waits for its reply. With connections reused for many messages the
cost is a few round trips per message, which on a LAN or loopback relay is far
below the server's own per-message work; several connections hide it further.

Every result is classified as the outbox needs it:
``accepted`` (2xx after DATA), ``temporary`` (4xx, lost connection, timeout:
retry later) or ``permanent`` (5xx: this recipient will not take it).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
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


def classify_error(error: BaseException) -> SendResult:
    """An exception from aiosmtplib (or the socket) as the outbox sees it."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in error.recipients]
        code = max(codes) if codes else 450
        detail = "; ".join(f"{r.code} {r.message}" for r in error.recipients)
        return _by_code(code, detail)
    if isinstance(error, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError):
        return SendResult("temporary", None, f"{type(error).__name__}: {error}")
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        # A wrong password is the operator's problem, not the recipient's: retry.
        return SendResult("temporary", error.code, f"authentication failed: {error.message}")
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return _by_code(error.code, error.message)
    if isinstance(error, aiosmtplib.SMTPException | OSError | asyncio.TimeoutError):
        return SendResult("temporary", None, f"{type(error).__name__}: {error}")
    raise error


def _by_code(code: int, message: str) -> SendResult:
    detail = f"{code} {message}".strip()
    if 500 <= code < 600:
        return SendResult("permanent", code, detail)
    return SendResult("temporary", code, detail)


class SmtpPool:
    """``size`` reused connections; ``send`` borrows one for one message.

    A connection that failed (421, drop, timeout) is closed and reopened on its
    next use; one that only had a recipient refused is reset and kept.
    """

    def __init__(self, cfg: SmtpConfig, size: int | None = None) -> None:
        self._cfg = cfg
        self.size = size or cfg.connections
        self._idle: asyncio.Queue[aiosmtplib.SMTP | None] = asyncio.Queue()
        for _ in range(self.size):
            self._idle.put_nowait(None)
        self.connects = 0

    async def send(self, sender: str, recipient: str, raw: bytes) -> SendResult:
        client = await self._idle.get()
        try:
            client = await self._connected(client)
            result = await self._transfer(client, sender, recipient, raw)
            if result.outcome != "accepted" and not await self._usable(client):
                await _close(client)
                client = None
            return result
        except Exception as error:  # noqa: BLE001 - classified; the connection is discarded
            await _close(client)
            client = None
            return classify_error(error)
        finally:
            self._idle.put_nowait(client)

    async def _connected(self, client: aiosmtplib.SMTP | None) -> aiosmtplib.SMTP:
        if client is not None and client.is_connected:
            return client
        fresh = smtp_connection(self._cfg)
        await fresh.connect()
        self.connects += 1
        return fresh

    async def _transfer(self, client: aiosmtplib.SMTP, sender: str, recipient: str, raw: bytes) -> SendResult:
        try:
            await client.sendmail(sender, [recipient], raw)
        except aiosmtplib.SMTPRecipientsRefused as error:
            return classify_error(error)
        except aiosmtplib.SMTPResponseException as error:
            if error.code == 421:  # the server is closing this session
                raise
            return classify_error(error)
        return ACCEPTED

    async def _usable(self, client: aiosmtplib.SMTP) -> bool:
        """After a refused transaction: RSET so the next message starts clean."""
        if not client.is_connected:
            return False
        try:
            await client.rset()
        except Exception:  # noqa: BLE001 - a failed RSET just means reconnect
            return False
        return True

    async def close(self) -> None:
        for _ in range(self.size):
            await _close(await self._idle.get())


async def _close(client: aiosmtplib.SMTP | None) -> None:
    if client is None or not client.is_connected:
        return
    try:
        await asyncio.wait_for(client.quit(), timeout=5)
    except Exception:  # noqa: BLE001 - closing is best effort
        client.close()
