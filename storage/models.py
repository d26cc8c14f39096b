"""Database models for the whole flow, SQLAlchemy 2 typed declarative style.

Times are stored as timezone-aware UTC. Status columns are short strings with
the allowed values listed next to them (checked by the code that writes them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; pass an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class MessageStatus(StrEnum):
    NEW = "new"  # stored, not yet routed
    PROCESSED = "processed"  # a command, bounce or decision carried out
    HELD = "held"  # waiting for (or decided by) a coordinator
    FAILED = "failed"  # routing raised; held for a human
    DROPPED = "dropped"  # an auto-reply or loop: kept, never forwarded


class ItemStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    MERGED = "merged"  # joined another item; decided with it


class ItemKind(StrEnum):
    REPORT = "report"
    UNKNOWN_SENDER = "unknown_sender"
    REPLY_TO_ALERT = "reply_to_alert"
    FLOOD_SUMMARY = "flood_summary"
    UPDATE = "update"  # a follow-up to a sent alert


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # 5xx, out of attempts, or the recipient is gone


class MemberStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # by bounces
    LEFT = "left"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UtcDateTime()}  # noqa: RUF012 - read by SQLAlchemy


class Message(Base):
    """One incoming message exactly as received, stored before it leaves the inbox."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # sha256 over the Message-ID and the raw bytes: the deduplication key.
    dedup_key: Mapped[str] = mapped_column(String(64), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(998))
    origin: Mapped[str] = mapped_column(String(200))  # e.g. "imap:INBOX", "maildir", "lmtp"
    origin_ref: Mapped[str | None] = mapped_column(String(200))  # UID or file name
    received_at: Mapped[datetime]
    size: Mapped[int] = mapped_column(Integer)
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)  # None once purged
    from_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str | None] = mapped_column(Text)  # normalised; None once purged
    # Parsed once at routing, reused afterwards (no path parses the raw bytes again):
    # the From names and addresses and the attachments (mail.facts.MailFacts) ...
    facts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # ... and a report's duplicate signature (rules.similarity.signature), for merging.
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default=MessageStatus.NEW)  # a MessageStatus
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None]
    purged_at: Mapped[datetime | None]

    classification: Mapped[ClassificationRecord | None] = relationship(
        back_populates="message", uselist=False
    )

    __table_args__ = (Index("ix_messages_status", "status"), Index("ix_messages_from", "from_address", "received_at"))


class ClassificationRecord(Base):
    """What the rules decided about a message, with their explanation."""

    __tablename__ = "classifications"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    source: Mapped[str] = mapped_column(String(20))  # police|municipality|coordinator|member|unknown
    kind: Mapped[str] = mapped_column(String(20))  # report|command|auto_reply|bounce|loop
    # For kind "command": decision|subscribe|unsubscribe|help|confirm
    command: Mapped[str | None] = mapped_column(String(20))
    category: Mapped[str | None] = mapped_column(String(30))
    wards: Mapped[list[Any]] = mapped_column(JSON, default=list)
    urgency: Mapped[str | None] = mapped_column(String(10))  # urgent|normal|low
    explanation: Mapped[list[Any]] = mapped_column(JSON, default=list)
    partner_name: Mapped[str | None] = mapped_column(String(200))
    # How sure the sender is who the From header says (rules.sender.Assurance), and why.
    sender_assurance: Mapped[str] = mapped_column(String(20), default="unauthenticated")
    sender_notes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # What a sender who was not believed claimed to be (police, coordinator, member).
    claimed_source: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime]

    message: Mapped[Message] = relationship(back_populates="classification")

    __table_args__ = (Index("ix_classifications_kind_source", "kind", "source"),)


class QueueItem(Base):
    """A message (or a member's reply, or a flood summary) waiting for a coordinator."""

    __tablename__ = "queue_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(20), default=ItemKind.REPORT)  # an ItemKind
    status: Mapped[str] = mapped_column(String(20), default=ItemStatus.PENDING)  # an ItemStatus
    source: Mapped[str] = mapped_column(String(20))
    category: Mapped[str | None] = mapped_column(String(30))
    urgency: Mapped[str] = mapped_column(String(10), default="normal")
    proposed_wards: Mapped[list[Any]] = mapped_column(JSON, default=list)
    target_wards: Mapped[list[Any] | None] = mapped_column(JSON)  # set by WIJK
    partners: Mapped[list[Any]] = mapped_column(JSON, default=list)  # POLITIE / GEMEENTE
    edited_text: Mapped[str | None] = mapped_column(Text)  # set by WIJZIG
    # sha256 of the single-use token (the token itself is never stored).
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_used_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    remind_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    escalate_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(320))
    reason: Mapped[str | None] = mapped_column(Text)
    # Two-way flow: the alert a member's reply answers, and who should get it.
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"))
    proposed_recipient: Mapped[str | None] = mapped_column(String(320))
    # Duplicates merged into this item (issue: fewer, better alerts).
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("queue_items.id", ondelete="SET NULL"))
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)

    message: Mapped[Message | None] = relationship()

    __table_args__ = (
        Index("ix_queue_items_status", "status", "remind_at"),
        Index("ix_queue_items_created", "created_at"),
        Index("ix_queue_items_merged_into", "merged_into_id"),
    )


class DuplicateKey(Base):
    """Where a held report can be found by a later one about the same incident: one row per ward
    (``""`` without one), so candidates come from an index, not from reading the queue."""

    __tablename__ = "duplicate_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The item a repeat of this report would join (the report's own, or the one it joined).
    head_id: Mapped[int] = mapped_column(ForeignKey("queue_items.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))  # its signature
    category: Mapped[str] = mapped_column(String(30))
    ward: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_duplicate_keys_place", "category", "ward", "created_at"),
                      Index("ix_duplicate_keys_head", "head_id"), Index("ix_duplicate_keys_message", "message_id"))


class CorrectionField(StrEnum):
    URGENCY = "urgency"
    CATEGORY = "category"


class Correction(Base):
    """A coordinator overruling the rules' urgency or category of a queue item (SPOED, CATEGORIE ...).

    Who it was stays in the audit trail; this row keeps only the role, so the
    monthly report can count where the rules are overruled for as long as the
    decisions are kept.
    """

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    queue_item_id: Mapped[int] = mapped_column(ForeignKey("queue_items.id", ondelete="CASCADE"))
    field: Mapped[str] = mapped_column(String(20))  # a CorrectionField
    old_value: Mapped[str | None] = mapped_column(String(30))  # what the rules said (None: no category)
    new_value: Mapped[str] = mapped_column(String(30))
    # ward_coordinator | network_coordinator | operator (relay.approvals.corrections.role_of)
    role: Mapped[str] = mapped_column(String(30))
    wards: Mapped[list[Any]] = mapped_column(JSON, default=list)  # the item's proposed wards then
    at: Mapped[datetime]

    __table_args__ = (Index("ix_corrections_item", "queue_item_id"), Index("ix_corrections_at", "at"))


class Alert(Base):
    """An approved message as it is forwarded: one per decision."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Not a foreign key: queue_items.alert_id already points here (no cycle).
    queue_item_id: Mapped[int | None] = mapped_column(BigId, index=True)
    wards: Mapped[list[Any]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(20))
    source_label: Mapped[str] = mapped_column(String(300))  # "Politie Oost-Brabant" / "een buurtbewoner uit X"
    original_sender: Mapped[str | None] = mapped_column(String(320))  # for the two-way flow
    category: Mapped[str | None] = mapped_column(String(30))
    urgency: Mapped[str] = mapped_column(String(10), default="normal")
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)  # None once purged
    # Attachments that pass, as stored parts: [{"filename", "content_type", "index"}].
    attachments: Mapped[list[Any]] = mapped_column(JSON, default=list)
    message_id_header: Mapped[str] = mapped_column(String(300), unique=True)
    tag: Mapped[str] = mapped_column(String(64), unique=True)  # in Reply-To: bin+a-<tag>@
    created_at: Mapped[datetime]
    fanned_out_at: Mapped[datetime | None]  # all outbox rows exist
    completed_at: Mapped[datetime | None]  # no pending rows left
    # A follow-up (AFGEROND) threads to the alert with this tag, copy by copy.
    thread_tag: Mapped[str | None] = mapped_column(String(64))


class Delivery(Base):
    """The outbox: one row per (alert, recipient) or per single notice."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id", ondelete="SET NULL"))
    recipient: Mapped[str] = mapped_column(String(320))
    # For notices (approval requests, answers, confirmations) the full message.
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    purpose: Mapped[str] = mapped_column(String(30), default="alert")
    status: Mapped[str] = mapped_column(String(10), default=DeliveryStatus.PENDING)  # a DeliveryStatus
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("alert_id", "recipient", name="uq_deliveries_alert_recipient"),
        Index("ix_deliveries_due", "status", "next_attempt_at"),
    )


class Member(Base):
    """A resident who receives the alerts of one ward."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # lowercase
    name: Mapped[str | None] = mapped_column(String(200))
    ward: Mapped[str] = mapped_column(String(60))
    postcode: Mapped[str | None] = mapped_column(String(10))
    language: Mapped[str] = mapped_column(String(2), default="nl")
    status: Mapped[str] = mapped_column(String(10), default=MemberStatus.ACTIVE)  # a MemberStatus
    bounce_score: Mapped[int] = mapped_column(Integer, default=0)
    last_bounce_at: Mapped[datetime | None]  # the score decays when bounces stop
    # Personal token for List-Unsubscribe; random, not guessable.
    unsubscribe_token: Mapped[str] = mapped_column(String(64), unique=True)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    joined_at: Mapped[datetime]
    left_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_members_ward_status", "ward", "status"),)


class ConfirmationAction(StrEnum):
    SUBSCRIBE = "subscribe"  # AANMELDEN: join ``ward``
    UNSUBSCRIBE = "unsubscribe"  # AFMELDEN from an address whose mail was not verified
    PREFERENCES = "preferences"  # a setting from an address whose mail was not verified: ``payload``
    REENABLE = "reenable"  # deliveries paused by bounces start again


class Confirmation(Base):
    """A pending change only the address's owner can confirm, by answering with the token (double opt-in)."""

    __tablename__ = "confirmations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    ward: Mapped[str] = mapped_column(String(60))
    postcode: Mapped[str | None] = mapped_column(String(10))
    language: Mapped[str] = mapped_column(String(2), default="nl")
    action: Mapped[str] = mapped_column(String(20), default=ConfirmationAction.SUBSCRIBE)  # a ConfirmationAction
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_confirmations_email", "email", "created_at"),)


class MailboxState(Base):
    """Where a mailbox source left off: UIDVALIDITY and the last UID stored."""

    __tablename__ = "mailbox_state"

    source: Mapped[str] = mapped_column(String(300), primary_key=True)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


class SourceHealth(Base):
    """How a mailbox source's last passes went, for ``binrelay status``: named by its label, never an address."""

    __tablename__ = "source_health"

    source: Mapped[str] = mapped_column(String(300), primary_key=True)  # "imap host:993/INBOX"
    checked_at: Mapped[datetime | None]  # the last pass that could read the mailbox
    failed_at: Mapped[datetime | None]  # the last pass that could not (None once one succeeds again)
    error: Mapped[str | None] = mapped_column(String(500))


class AuditEvent(Base):
    """Who did what: decisions, refusals, membership changes, operator actions."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(320))  # an address, "operator:<user>" or "system"
    action: Mapped[str] = mapped_column(String(50))
    queue_item_id: Mapped[int | None] = mapped_column(ForeignKey("queue_items.id", ondelete="SET NULL"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_audit_at", "at"), Index("ix_audit_item", "queue_item_id"))


class RateWindow(Base):
    """Every rate limit's counter: events per (limit, key) in a fixed time window (``storage.limits``).

    ``key`` is a keyed digest of an address, never the address itself, or "*"
    for a network-wide limit.
    """

    __tablename__ = "rate_windows"

    bucket: Mapped[str] = mapped_column(String(40), primary_key=True)  # e.g. "sender_hour", "member_answers"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime(), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    # The flood limit's one summary item for this sender and hour.
    summary_item_id: Mapped[int | None] = mapped_column(ForeignKey("queue_items.id", ondelete="SET NULL"))

    __table_args__ = (Index("ix_rate_windows_start", "window_start"),)



class Worker(Base):
    """A running binrelay process: its claims are its own only while its heartbeat is fresh."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)  # host:pid:random
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]

    __table_args__ = (Index("ix_workers_heartbeat", "heartbeat_at"),)


class JobRun(Base):
    """A periodic job done for one period (a day's digests, a month's report): exactly one process does it."""

    __tablename__ = "job_runs"

    job: Mapped[str] = mapped_column(String(60), primary_key=True)  # e.g. "digests", "report:<recipient key>"
    period: Mapped[str] = mapped_column(String(20), primary_key=True)  # e.g. "2026-12-01", "2026-11"
    worker: Mapped[str] = mapped_column(String(100))
    ran_at: Mapped[datetime]
