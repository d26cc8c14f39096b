"""DAGELIJKS: non-urgent alerts wait for one daily digest; urgent ones go at once."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from relay.delivery.alerts import publish_alert
from relay.delivery.digest import send_digests
from relay.delivery.sender import deliver_pending
from relay.devservers.smtpsink import RecordingSink
from relay.service.clock import FrozenClock
from relay.service.runtime import Runtime, build_runtime
from storage.models import Delivery
from tests.delivery_world import add_members, approved_item, make_config, report_bytes


def alert(rt: Runtime, subject: str, urgency: str = "normal", category: str = "burglary") -> None:
    now = rt.clock.now()
    with rt.sessions() as session, session.begin():
        item = approved_item(session, now, raw=report_bytes(subject=subject, body=f"Tekst over {subject}.\n"),
                             subject=subject, urgency=urgency, category=category)
        publish_alert(rt, session, item, decided_by="anna@example.org", now=now)


def received(sink: RecordingSink, address: str) -> list[str]:
    return [str(message_from_bytes(raw, policy=default)["Subject"])
            for _, rcpts, raw in sink.messages if rcpts == [address]]


def test_digest_members_get_one_daily_message(smtp_sink: RecordingSink, sessions: sessionmaker[Session],
                                             clock: FrozenClock) -> None:
    rt = build_runtime(make_config(smtp_sink.port), sessions, clock)
    now = clock.now()
    with sessions() as session, session.begin():
        add_members(session, "maaspoort", 1, now, prefix="direct")
        add_members(session, "maaspoort", 1, now, prefix="daily", preferences={"digest": True})
        add_members(session, "empel", 1, now, prefix="elsewhere", preferences={"digest": True})
    alert(rt, "Inbraak Marathonloop")
    clock.advance(hours=1)
    alert(rt, "Fietsendiefstal station", category="theft")
    alert(rt, "Vermiste man", urgency="urgent", category="missing_person")
    deliver_pending(rt)
    assert len(received(smtp_sink, "direct0@example.net")) == 3
    assert received(smtp_sink, "daily0@example.net") == ["[Maaspoort] SPOED Vermissing: Vermiste man"]

    clock.advance(hours=1)
    assert send_digests(rt) == 1  # the Empel member had nothing
    assert send_digests(rt) == 0  # once a day
    deliver_pending(rt)
    digests = [raw for _, rcpts, raw in smtp_sink.messages if rcpts == ["daily0@example.net"]][1:]
    assert len(digests) == 1
    digest = message_from_bytes(digests[0], policy=default)
    assert digest["Subject"] == "[Maaspoort] Dagelijks overzicht: 2 berichten"
    assert digest["List-Unsubscribe"].startswith("<mailto:bin+u-")
    text = digest.get_content()
    assert "Inbraak: Inbraak Marathonloop" in text and "Diefstal: Fietsendiefstal station" in text
    assert "Vermiste man" not in text and "bel 112" in text

    clock.advance(hours=21)
    assert send_digests(rt) == 0  # nothing new
    alert(rt, "Vernieling bushokje", category="vandalism")
    clock.advance(hours=1)
    assert send_digests(rt) == 1
    with sessions() as session:
        newest = session.scalars(select(Delivery).where(Delivery.purpose == "digest").order_by(Delivery.id.desc())).first()
        assert newest is not None and newest.raw is not None and newest.member_id is not None
        text = message_from_bytes(newest.raw, policy=default).get_content()
    assert "Vernieling bushokje" in text and "Marathonloop" not in text
