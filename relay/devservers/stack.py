"""A whole binrelay on loopback: private Dovecot, an SMTP sink, a SQLite file.

``binrelay demo`` and the end-to-end tests both use it: they mail messages
into the network mailbox, run the daemon's passes, read what came out of the
SMTP sink, and answer approval requests the way a coordinator's mail app does.
Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path
from typing import Any, Self

import tomli_w

from relay.devservers.dovecot import PrivateDovecot
from relay.devservers.smtpsink import RecordingSink
from relay.service.clock import Clock, SystemClock
from relay.service.daemon import Daemon, PassResult
from relay.service.tokens import new_token
from storage.models import Member, MemberStatus

NETWORK_ADDRESS = "bin@bin-demo.nl"
NETWORK_NAME = "BIN Demostad"


@dataclass(frozen=True)
class Ward:
    slug: str
    name: str
    coordinators: list[str]
    streets: list[str] = field(default_factory=list)
    postcodes: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)


DEFAULT_WARDS = [
    Ward("maaspoort", "Maaspoort", ["anna@coordinatoren.nl"], ["Marathonloop", "Olympiaplein"], ["5221", "5222"]),
    Ward("empel", "Empel", ["bert@coordinatoren.nl"], ["Empelseweg", "Kerkstraat"], ["5235"]),
]
NETWORK_COORDINATORS = ["kees@coordinatoren.nl"]


def base_config(workdir: Path, wards: Iterable[Ward] = DEFAULT_WARDS) -> dict[str, Any]:
    """The configuration as a TOML-ready dict; callers add imap/smtp and overrides."""
    return {
        "network": {
            "name": NETWORK_NAME,
            "address": NETWORK_ADDRESS,
            "language": "nl",
            "coordinators": NETWORK_COORDINATORS,
        },
        "database": {"url": f"sqlite:///{workdir / 'binrelay.db'}"},
        "wards": [
            {
                "slug": w.slug, "name": w.name, "aliases": w.aliases or [w.name],
                "postcodes": w.postcodes, "streets": w.streets, "coordinators": w.coordinators,
            }
            for w in wards
        ],
        "partners": [
            {
                "kind": "police", "name": "Politie Oost-Brabant", "domains": ["politie.nl"],
                "addresses": [], "forward_to": "wijkagent@politie.nl",
            },
            {
                "kind": "municipality", "name": "Gemeente Demostad", "domains": ["demostad.nl"],
                "addresses": [], "forward_to": "wijkmanager@demostad.nl",
            },
        ],
    }


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class LoopbackStack:
    """Start with ``with LoopbackStack(tmp) as stack:``; everything stops on exit."""

    def __init__(
        self,
        workdir: Path,
        *,
        clock: Clock | None = None,
        dovecot: PrivateDovecot | None = None,
        config: dict[str, Any] | None = None,
        mailbox_user: str = NETWORK_ADDRESS,
        sink: RecordingSink | None = None,
    ) -> None:
        self.workdir = workdir
        # The IMAP login; tests sharing one Dovecot give each stack its own.
        self.mailbox_user = mailbox_user
        self.clock = clock or SystemClock()
        self._own_dovecot = dovecot is None
        self.dovecot = dovecot or PrivateDovecot()
        self.sink = sink or RecordingSink()
        self.overrides = config or {}
        self.config_path = workdir / "binrelay.toml"
        self.daemon: Daemon | None = None

    # -- life cycle ---------------------------------------------------------
    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.dovecot.start()
        password = self.dovecot.add_user(self.mailbox_user)
        secret = self.workdir / "imap.secret"
        secret.write_text(password)
        secret.chmod(0o600)
        self.sink.start()
        self.write_config(secret)
        self.daemon = Daemon(self.config_path, clock=self.clock)
        self.daemon.build()
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.close()
        self.sink.stop()
        if self._own_dovecot:
            self.dovecot.remove()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def write_config(self, imap_secret: Path) -> None:
        assert self.dovecot.port is not None
        config = base_config(self.workdir)
        config["imap"] = {
            "host": "127.0.0.1", "port": self.dovecot.port, "ssl": False, "starttls": False,
            "username": self.mailbox_user, "password_file": str(imap_secret),
            "mailbox": "INBOX", "processed_folder": "Verwerkt", "timeout_seconds": 10.0,
        }
        config["smtp"] = {
            "host": "127.0.0.1", "port": self.sink.port, "ssl": False, "starttls": False,
            "connections": 2, "timeout_seconds": 10.0,
        }
        config = merge(config, self.overrides)
        self.config_path.write_text(_toml(config), encoding="utf-8")

    # -- people -------------------------------------------------------------
    def add_members(self, ward: str, addresses: Iterable[str], language: str = "nl") -> None:
        assert self.daemon is not None and self.daemon.runtime is not None
        now = self.clock.now()
        with self.daemon.runtime.sessions() as session, session.begin():
            for address in addresses:
                session.add(Member(
                    email=address.lower(), name=None, ward=ward, language=language,
                    status=MemberStatus.ACTIVE, unsubscribe_token=new_token(), preferences={},
                    joined_at=now,
                ))

    # -- mail in, mail out --------------------------------------------------
    def mail_in(self, raw: bytes) -> None:
        """A message arrives in the network mailbox (IMAP APPEND to INBOX)."""
        self.dovecot.deliver(self.mailbox_user, raw)

    def run_once(self) -> PassResult:
        assert self.daemon is not None
        return self.daemon.run_once()

    def sent(self) -> list[EmailMessage]:
        """Every message the SMTP sink accepted, parsed, in order."""
        return [parse(raw) for _from, _rcpts, raw in self.sink.messages]

    def sent_to(self, address: str) -> list[EmailMessage]:
        address = address.lower()
        return [
            parse(raw) for _from, rcpts, raw in self.sink.messages
            if address in (r.lower() for r in rcpts)
        ]

    def approval_requests(self, coordinator: str) -> list[EmailMessage]:
        return [m for m in self.sent_to(coordinator) if _marker(m) == "approval"]

    def coordinator_copies(self, coordinator: str) -> list[EmailMessage]:
        """The coordinator's own copies of sent alerts (their follow-up right is in the reply address)."""
        return [m for m in self.sent_to(coordinator) if _marker(m) == "followup"]


RECEIVING_SERVER = "mx." + NETWORK_ADDRESS.rsplit("@", 1)[1]  # the network's own MX: a trusted authserv-id


def verdict(sender: str, result: str = "pass") -> dict[str, str]:
    """The receiving server's Authentication-Results for ``sender``, as our MX would add them."""
    domain = getaddresses([sender])[0][1].rsplit("@", 1)[-1]
    return {"Authentication-Results": f"{RECEIVING_SERVER}; dmarc={result} header.from={domain}"}


def compose(
    *, sender: str, subject: str, body: str, to: str = NETWORK_ADDRESS,
    date: datetime | None = None, headers: dict[str, str] | None = None, verified: bool = True,
) -> bytes:
    """A plain message as a mail client would send it to the network address.

    ``verified``: as it arrives after our receiving server checked it (dmarc=pass); False for a
    message that server had no verdict on.
    """
    message = EmailMessage()
    if verified and not any(name.lower() == "authentication-results" for name in headers or {}):
        headers = {**verdict(sender), **(headers or {})}
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(date) if date else email.utils.formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip(">").encode("idna").decode())
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    international = not (sender.isascii() and to.isascii())  # a client then writes UTF-8 headers (RFC 6532)
    return message.as_bytes(policy=email.policy.SMTPUTF8 if international else email.policy.SMTP)


def reply(original: EmailMessage, *, sender: str, text: str, date: datetime | None = None,
          verified: bool = True) -> bytes:
    """A Gmail-style reply: new text on top, "Op ... schreef ...:" and the quote below."""
    reply_to = original.get("Reply-To") or original.get("From")
    to = getaddresses([str(reply_to)])[0][1]
    quoted = "\n".join(f"> {line}" for line in _body(original).splitlines())
    when = str(original.get("Date", ""))
    body = f"{text}\n\nOp {when} schreef {original.get('From')}:\n{quoted}\n"
    message_id = str(original.get("Message-ID", ""))
    return compose(
        sender=sender, to=to, subject=f"Re: {original.get('Subject', '')}", body=body, date=date,
        headers={"In-Reply-To": message_id, "References": message_id}, verified=verified,
    )


def _marker(message: EmailMessage) -> str | None:
    subject = str(message.get("Subject", ""))
    if "[BIN-f-" in subject:
        return "followup"
    if "[BIN-c-" in subject:
        return "confirm"
    return "approval" if "[BIN-" in subject else None


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def _toml(config: dict[str, Any]) -> str:
    """TOML without None values (TOML has no null: a missing key means the default)."""
    return tomli_w.dumps(_drop_none(config))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
