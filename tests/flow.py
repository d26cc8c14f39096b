"""An in-process binrelay without IMAP: store raw bytes, route, deliver to a real sink.

For tests about what happens to a message once it is in (hostile input,
floods, properties); the IMAP path itself is tested in test_imap_source.py
and end to end in test_e2e_flow.py.
"""

from __future__ import annotations

import email
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import select

from relay.config import Config, parse_config
from relay.delivery.sender import deliver_pending
from relay.devservers.smtpsink import RecordingSink
from relay.devservers.stack import base_config, merge
from relay.ingest.store import Ingestor
from relay.routing.pipeline import RouteStats, route_pending
from relay.service.clock import FrozenClock
from relay.service.runtime import Runtime, build_runtime
from relay.service.tokens import new_token
from storage.db import make_engine, migrate
from storage.models import Member, Message, QueueItem

COORDINATORS = {"anna@coordinatoren.nl", "bert@coordinatoren.nl", "kees@coordinatoren.nl"}


def flow_config(tmp_path: Path, sink: RecordingSink, overrides: dict[str, Any] | None = None) -> Config:
    data = base_config(tmp_path)
    data["smtp"] = {"host": "127.0.0.1", "port": sink.port, "starttls": False, "connections": 2,
                    "timeout_seconds": 5.0}
    data["maildir"] = {"path": str(tmp_path / "Maildir")}  # a source is required; unused here
    return parse_config(merge(data, overrides or {}), tmp_path / "binrelay.toml")


@dataclass
class Flow:
    rt: Runtime
    ingestor: Ingestor
    sink: RecordingSink

    def add_member(self, address: str, ward: str) -> None:
        with self.rt.sessions() as session, session.begin():
            session.add(Member(email=address, ward=ward, status="active", language="nl",
                               unsubscribe_token=new_token(), preferences={},
                               joined_at=self.rt.clock.now()))

    def store(self, raw: bytes) -> int:
        return self.ingestor.store(raw, origin="test", origin_ref=None).message_id

    def route(self) -> RouteStats:
        return route_pending(self.rt, limit=100_000)

    def deliver(self) -> None:
        deliver_pending(self.rt)

    def message(self, message_id: int) -> Message:
        with self.rt.sessions() as session:
            row = session.get(Message, message_id)
            assert row is not None
            session.expunge(row)
            return row

    def items_for(self, message_id: int) -> list[QueueItem]:
        with self.rt.sessions() as session:
            items = list(session.scalars(select(QueueItem).where(QueueItem.message_id == message_id)))
            for item in items:
                session.expunge(item)
            return items

    def sent(self) -> list[tuple[list[str], bytes]]:
        return [(rcpts, raw) for _from, rcpts, raw in self.sink.messages]

    def recipients(self) -> set[str]:
        return {r.lower() for rcpts, _raw in self.sent() for r in rcpts}


def make_flow(tmp_path: Path, sink: RecordingSink, clock: FrozenClock,
              overrides: dict[str, Any] | None = None) -> Flow:
    config = flow_config(tmp_path, sink, overrides)
    engine = make_engine(config.database.url)
    migrate(engine)
    rt = build_runtime(config, engine, clock)
    return Flow(rt, Ingestor(rt.sessions, clock, config.limits.max_message_bytes), sink)


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed
