"""Builders for the delivery tests: a config, a runtime, members, an approved item."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from typing import Any

from sqlalchemy.orm import Session

from relay.config import Config, parse_config
from relay.service.tokens import new_token, token_hash
from storage.models import ClassificationRecord, Member, Message, QueueItem


def make_config(smtp_port: int, db_url: str = "sqlite://", **delivery: Any) -> Config:
    return parse_config(config_document(smtp_port, db_url, **delivery))


def config_document(smtp_port: int, db_url: str = "sqlite://", **delivery: Any) -> dict[str, Any]:
    """The delivery world's configuration as TOML-ready data (a daemon process reads it from a file)."""
    return {
        "network": {"name": "BIN Den Bosch", "address": "bin@example.org", "coordinators": ["kees@example.org"]},
        "maildir": {"path": "/tmp/unused-maildir"},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "starttls": False, "connections": 2,
                 "timeout_seconds": 5},
        "database": {"url": db_url},
        "approval": {"token_key_env": "BINRELAY_TEST_TOKEN_KEY", "token_key_auto": False},
        "wards": [
            {"slug": "maaspoort", "name": "Maaspoort", "postcodes": ["5221"], "coordinators": ["anna@example.org"]},
            {"slug": "empel", "name": "Empel", "postcodes": ["5235"], "coordinators": ["piet@example.org"]},
        ],
        "partners": [
            {"kind": "police", "name": "Politie Oost-Brabant", "domains": ["politie.nl"],
             "forward_to": "wijkagent@politie.nl", "ward_forward_to": {"empel": "agent.empel@politie.nl"}},
            {"kind": "municipality", "name": "Gemeente 's-Hertogenbosch", "domains": ["s-hertogenbosch.nl"],
             "forward_to": "wijkmanager@s-hertogenbosch.nl"},
        ],
        "delivery": {"retry_base_seconds": 60, "retry_max_seconds": 600, **delivery},
    }


def add_members(session: Session, ward: str, count: int, now: datetime, *, prefix: str | None = None,
                language: str = "nl", **fields: Any) -> list[Member]:
    fields.setdefault("preferences", {})
    members = [
        Member(email=f"{prefix or ward}{i}@example.net", name=f"Bewoner {i}", ward=ward, language=language,
               status="active", bounce_score=0, unsubscribe_token=new_token(), joined_at=now,
               **{**fields, "preferences": dict(fields["preferences"])})
        for i in range(count)
    ]
    session.add_all(members)
    session.flush()
    return members


def report_bytes(sender: str = "Jan de Vries <jan@example.net>", subject: str = "Inbraak Marathonloop",
                 body: str = "Vannacht is ingebroken aan de Marathonloop.\n",
                 attachment: bytes | None = None, extra_headers: dict[str, str] | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "bin@example.org"
    message["Subject"] = subject
    message["Message-ID"] = f"<{new_token()}@example.net>"
    message["Received"] = "from mail.example.net (10.1.2.3) by mx.example.org"
    message["X-Originating-IP"] = "[10.1.2.3]"
    for name, value in (extra_headers or {}).items():
        message[name] = value
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(attachment, maintype="image", subtype="jpeg", filename="foto.jpg")
    return message.as_bytes()


def approved_item(session: Session, now: datetime, *, raw: bytes, source: str = "member",
                  category: str = "burglary", wards: list[str] | None = None, partners: list[str] | None = None,
                  partner_name: str | None = None, urgency: str = "normal", edited_text: str | None = None,
                  body_text: str | None = None, from_address: str = "jan@example.net",
                  subject: str = "Inbraak Marathonloop") -> QueueItem:
    from mail.message import parse_mail

    mail = parse_mail(raw)
    message = Message(dedup_key=new_token() * 4, message_id=mail.message_id, origin="test", received_at=now,
                      size=len(raw), raw=raw, from_address=from_address, subject=subject,
                      body_text=body_text if body_text is not None else mail.text, status="processed")
    session.add(message)
    session.flush()
    session.add(ClassificationRecord(message_id=message.id, source=source, kind="report", category=category,
                               wards=wards or ["maaspoort"], urgency=urgency, explanation=[],
                               partner_name=partner_name, created_at=now))
    item = QueueItem(message_id=message.id, kind="report", status="approved", source=source, category=category,
                     urgency=urgency, proposed_wards=wards or ["maaspoort"], partners=partners or [],
                     edited_text=edited_text, token_hash=token_hash(new_token()), created_at=now,
                     expires_at=now, decided_at=now, decided_by="anna@example.org")
    session.add(item)
    session.flush()
    return item
