"""Building binrelay's own outgoing messages (notices, answers, requests).

Every header value that may carry outside text goes through ``header_safe`` so
that a CR/LF in a subject or name can never add a header.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime, formataddr, make_msgid

from relay.config import Config

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
MAX_SUBJECT = 200


def header_safe(value: str, limit: int = MAX_SUBJECT) -> str:
    """One line, no control characters, bounded length."""
    cleaned = " ".join(_CONTROL.sub(" ", value).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def plus_address(network_address: str, tag: str) -> str:
    """``bin+<tag>@domain`` for the network address ``bin@domain``."""
    local, domain = network_address.rsplit("@", 1)
    return f"{local}+{tag}@{domain}"


def new_message_id(config: Config) -> str:
    """A Message-ID on the network's own domain, with the angle brackets."""
    return make_msgid(idstring="binrelay", domain=config.network.domain)


def network_from(config: Config, label: str | None = None) -> str:
    name = config.network.name if not label else f"{config.network.name} {label}"
    return formataddr((header_safe(name), config.network.address))


def notice(
    config: Config,
    *,
    to: str,
    subject: str,
    body: str,
    now: datetime,
    reply_to: str | None = None,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    auto_submitted: str = "auto-generated",
    extra_headers: dict[str, str] | None = None,
) -> bytes:
    """A plain-text message from the network address to one recipient.

    ``auto_submitted`` is "auto-replied" for answers to a message (RFC 3834),
    so that well-behaved responders never answer back and no loop can start.
    """
    message = EmailMessage()
    message["From"] = network_from(config)
    message["To"] = to
    message["Subject"] = header_safe(subject)
    message["Date"] = format_datetime(now)
    message["Message-ID"] = new_message_id(config)
    if reply_to:
        message["Reply-To"] = reply_to
    if in_reply_to:
        message["In-Reply-To"] = _angle(in_reply_to)
        message["References"] = " ".join(_angle(ref) for ref in [*(references or []), in_reply_to])
    message["Auto-Submitted"] = auto_submitted
    message["X-Loop"] = config.network.address
    message["X-Mailer"] = "binrelay"
    for name, value in (extra_headers or {}).items():
        message[name] = header_safe(value, limit=900)
    message.set_content(body, charset="utf-8", cte="quoted-printable")
    # An internationalised address is written as UTF-8 (RFC 6532); the sender then needs SMTPUTF8.
    return message.as_bytes(policy=SMTP if to.isascii() else SMTPUTF8)


def _angle(message_id: str) -> str:
    message_id = message_id.strip()
    return message_id if message_id.startswith("<") else f"<{message_id}>"
