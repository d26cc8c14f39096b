"""The monthly report from a seeded database: every number, the split per ward, the mail with its chart."""

from __future__ import annotations

import email
import email.policy
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from relay.devservers.smtpsink import RecordingSink
from relay.jobs.report import ALL, build_report, previous_month, report_command
from relay.jobs.retention import purge
from relay.service.clock import FrozenClock
from relay.service.tokens import new_token, token_hash
from storage.models import ClassificationRecord, Delivery, Member, Message, QueueItem
from tests.flow import Flow, make_flow

NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def flow(tmp_path: Path, smtp_sink: RecordingSink) -> Flow:
    clock = FrozenClock(datetime(2026, 12, 2, 9, tzinfo=UTC))
    return make_flow(tmp_path, smtp_sink, clock)


def seed(flow: Flow) -> None:
    """November: 3 police reports (2 Maaspoort burglary, 1 Empel fraud), 1 member report
    in Maaspoort; decisions after 10, 20, 30 and 120 minutes (3 approved, 1 rejected),
    one expired; members: 2 joined Maaspoort, 1 left Empel; 5 copies sent, 1 failed.
    Plus one October message that must not count."""
    rows = [("police", "burglary", ["maaspoort"]), ("police", "burglary", ["maaspoort"]),
            ("police", "fraud", ["empel"]), ("member", "suspicious", ["maaspoort"])]
    with flow.rt.sessions() as session, session.begin():
        for n, (source, category, wards) in enumerate(rows):
            at = NOVEMBER + timedelta(days=n + 1)
            message = Message(dedup_key=f"k{n}", origin="test", received_at=at, size=1, raw=b"x", status="held",
                              from_address="a@politie.nl", subject="s", body_text="b")
            session.add(message)
            session.flush()
            session.add(ClassificationRecord(message_id=message.id, source=source, kind="report", category=category,
                                       wards=wards, urgency="normal", explanation=[], created_at=at))
        old = Message(dedup_key="old", origin="test", received_at=NOVEMBER - timedelta(days=3), size=1,
                      raw=b"x", status="held")
        session.add(old)
        session.flush()
        session.add(ClassificationRecord(message_id=old.id, source="police", kind="report", category="fire",
                                   wards=["maaspoort"], urgency="urgent", explanation=[], created_at=old.received_at))
        for n, (minutes, status, wards) in enumerate([(10, "approved", ["maaspoort"]), (20, "approved", ["maaspoort"]),
                                                      (30, "rejected", ["empel"]), (120, "approved", ["maaspoort"])]):
            created = NOVEMBER + timedelta(days=n + 1)
            session.add(QueueItem(kind="report", status=status, source="police", proposed_wards=wards,
                                  token_hash=token_hash(new_token()), created_at=created,
                                  expires_at=created + timedelta(hours=48),
                                  decided_at=created + timedelta(minutes=minutes)))
        session.add(QueueItem(kind="report", status="expired", source="member", proposed_wards=["empel"],
                              token_hash=token_hash(new_token()), created_at=NOVEMBER + timedelta(days=10),
                              expires_at=NOVEMBER + timedelta(days=12)))
        for n, (ward, left) in enumerate([("maaspoort", None), ("maaspoort", None), ("empel", NOVEMBER + timedelta(days=20))]):
            session.add(Member(email=f"m{n}@x.nl", ward=ward, status="left" if left else "active",
                               unsubscribe_token=new_token(), preferences={}, joined_at=NOVEMBER + timedelta(days=2),
                               left_at=left))
        for n in range(6):
            session.add(Delivery(alert_id=None, recipient=f"n{n}@x.nl", purpose="notice", status="sent",
                                 next_attempt_at=NOVEMBER, created_at=NOVEMBER))  # notices: not counted


def test_numbers_per_ward_and_overall(flow: Flow) -> None:
    seed(flow)
    with flow.rt.sessions() as session:
        report = build_report(session, "2026-11", ["maaspoort", "empel"])
    network, maaspoort, empel = report.wards[ALL], report.wards["maaspoort"], report.wards["empel"]
    assert network.received["police"] == 3 and network.received["member"] == 1
    assert network.received["*/burglary"] == 2 and network.received["*/fire"] == 0  # October left out
    assert maaspoort.received["police/burglary"] == 2 and maaspoort.received["member"] == 1
    assert empel.received["police/fraud"] == 1
    assert dict(network.outcomes) == {"approved": 3, "rejected": 1, "expired": 1}
    assert dict(maaspoort.outcomes) == {"approved": 3}
    assert network.median() == 25.0  # of 10, 20, 30, 120 minutes
    assert network.p90() == 120.0
    assert maaspoort.median() == 20.0
    assert network.members["joined"] == 3 and empel.members["left"] == 1 and maaspoort.members["joined"] == 2


def test_previous_month_is_the_default(flow: Flow) -> None:
    assert previous_month(datetime(2026, 1, 5, tzinfo=UTC)) == "2025-12"
    seed(flow)
    out = io.StringIO()
    assert report_command(flow.rt, None, False, out, io.StringIO()) == 0
    text = out.getvalue()
    assert "2026-11" in text and "Hele netwerk" in text
    assert "goedgekeurd 3, afgewezen 1, verlopen 1" in text
    assert "25 / 120 min" in text


def test_purged_months_still_report(flow: Flow) -> None:
    seed(flow)
    flow.rt.clock.set(datetime(2027, 6, 1, tzinfo=UTC))  # type: ignore[attr-defined]
    stats = purge(flow.rt, flow.rt.clock.now())
    assert stats.messages == 5
    with flow.rt.sessions() as session:
        assert all(m.raw is None and m.from_address is None for m in session.query(Message))
        report = build_report(session, "2026-11", ["maaspoort", "empel"])
    assert report.wards[ALL].received["police"] == 3
    assert purge(flow.rt, flow.rt.clock.now()).messages == 0  # idempotent


def test_send_mails_the_user_group_with_a_chart(flow: Flow) -> None:
    seed(flow)
    out = io.StringIO()
    assert report_command(flow.rt, "2026-11", True, out, io.StringIO()) == 0
    recipients = {r for rcpts, _raw in flow.sent() for r in rcpts}
    assert recipients == {"anna@coordinatoren.nl", "bert@coordinatoren.nl", "kees@coordinatoren.nl"}
    _rcpts, raw = flow.sent()[0]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert "Maandrapport" in str(message["Subject"])
    charts = [part for part in message.iter_attachments() if part.get_content_type() == "image/png"]
    assert len(charts) == 1 and charts[0].get_content()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sending_again_mails_nobody_twice(flow: Flow) -> None:
    seed(flow)
    for _ in range(2):
        out = io.StringIO()
        assert report_command(flow.rt, "2026-11", True, out, io.StringIO()) == 0
        assert "sent to 3 of 3 recipients" in out.getvalue()
    recipients = [r for rcpts, _raw in flow.sent() for r in rcpts]
    assert sorted(recipients) == ["anna@coordinatoren.nl", "bert@coordinatoren.nl", "kees@coordinatoren.nl"]


def test_a_report_that_could_not_be_sent_exits_1_and_goes_later(flow: Flow) -> None:
    seed(flow)
    flow.sink.reject("bert@coordinatoren.nl", "451 4.3.0 mailbox busy")
    err = io.StringIO()
    assert report_command(flow.rt, "2026-11", True, io.StringIO(), err) == 1
    assert "bert@coordinatoren.nl (will be retried): 451 4.3.0 mailbox busy" in err.getvalue()
    flow.sink.clear_faults()
    flow.rt.clock.advance(hours=2)  # type: ignore[attr-defined]
    assert report_command(flow.rt, "2026-11", True, io.StringIO(), io.StringIO()) == 0
    recipients = sorted(r for rcpts, _raw in flow.sent() for r in rcpts)
    assert recipients == ["anna@coordinatoren.nl", "bert@coordinatoren.nl", "kees@coordinatoren.nl"]
