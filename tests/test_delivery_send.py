"""Alerts through the outbox to the real recording sink: privacy, headers, faults, bounces."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mail.message import parse_mail
from relay.config import TemplatesConfig
from relay.delivery.alerts import publish_alert
from relay.delivery.bounces import handle_bounce
from relay.delivery.sender import close_connections, deliver_pending
from relay.delivery.verp import return_path
from relay.devservers.smtpsink import RecordingSink
from relay.service.clock import FrozenClock
from relay.service.runtime import Runtime, build_runtime
from relay.service.tokens import new_token
from storage import workers
from storage.models import ClassificationRecord, Delivery, Member, Message
from storage.outbox import claim_due
from tests.delivery_world import add_members, approved_item, make_config, report_bytes


def runtime(sink: RecordingSink, sessions: sessionmaker[Session], clock: FrozenClock, **delivery: Any) -> Runtime:
    return build_runtime(make_config(sink.port, **delivery), sessions, clock)


def publish(rt: Runtime, *, members: dict[str, int] | None = None, **item_fields: object) -> tuple[int, list[Member]]:
    now = rt.clock.now()
    with rt.sessions() as session, session.begin():
        created: list[Member] = []
        for ward, count in (members or {"maaspoort": 3}).items():
            created += add_members(session, ward, count, now)
        fields: dict = {"raw": report_bytes(), **item_fields}
        item = approved_item(session, now, **fields)
        alert = publish_alert(rt, session, item, decided_by="anna@example.org", now=now)
        for member in created:
            session.expunge(member)
        return alert.id, created


def parsed(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=default)


def by_recipient(sink: RecordingSink) -> dict[str, list[tuple[str, bytes]]]:
    result: dict[str, list[tuple[str, bytes]]] = {}
    for mail_from, rcpts, raw in sink.messages:
        assert len(rcpts) == 1
        result.setdefault(rcpts[0], []).append((mail_from, raw))
    return result


def deliveries(sessions: sessionmaker[Session]) -> list[Delivery]:
    with sessions() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def test_each_member_gets_one_private_copy(
    smtp_sink: RecordingSink, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    rt = runtime(smtp_sink, sessions, clock)
    _, members = publish(rt, members={"maaspoort": 4, "empel": 2})
    stats = deliver_pending(rt)
    assert (stats.sent, stats.retried, stats.failed) == (4, 0, 0)
    got = by_recipient(smtp_sink)
    maaspoort = [m.email for m in members if m.ward == "maaspoort"]
    assert sorted(got) == sorted(maaspoort)
    rows = {row.recipient: row for row in deliveries(sessions)}
    everyone = [m.email for m in members]
    for address, copies in got.items():
        assert len(copies) == 1
        mail_from, raw = copies[0]
        assert mail_from == return_path(rt.config, rt.signer, rows[address].id)  # signed VERP
        assert parsed(raw)["To"] == address
        text = raw.decode("ascii").lower()
        for other in everyone:
            if other != address:
                assert other not in text
    assert all(row.status == "sent" and row.sent_at == clock.now() for row in rows.values())
    assert deliver_pending(rt).sent == 0  # nothing twice


def test_headers_body_and_nothing_of_the_original(
    smtp_sink: RecordingSink, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    rt = runtime(smtp_sink, sessions, clock)
    alert_id, members = publish(rt, members={"maaspoort": 1})
    deliver_pending(rt)
    [(_, _, raw)] = smtp_sink.messages
    message = parsed(raw)
    member = members[0]
    with sessions() as session:
        from storage.models import Alert

        alert = session.get(Alert, alert_id)
        assert alert is not None
        tag = alert.tag
    [sender] = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("BIN Den Bosch Maaspoort", "bin@example.org")
    assert message["Reply-To"] == f"bin+a-{tag}@example.org"
    assert message["Subject"] == "[Maaspoort] Inbraak: Inbraak Marathonloop"
    assert message["Message-ID"] == f"<alert-{tag}.{member.id}@example.org>"
    assert message["List-Unsubscribe"] == f"<mailto:bin+u-{member.unsubscribe_token}@example.org?subject=AFMELDEN>"
    assert message["List-Id"] == "BIN Den Bosch Maaspoort <maaspoort.bin.example.org>"
    assert message["List-Post"] == "<mailto:bin@example.org>"
    assert message["Precedence"] == "list"
    assert message["X-Loop"] == "bin@example.org"
    assert message["Auto-Submitted"] == "auto-generated"
    body = message.get_content()
    assert "Bericht van een buurtbewoner uit Maaspoort" in body
    assert "Vannacht is ingebroken aan de Marathonloop." in body
    assert "bel 112" in body and "0900-8844" in body and "0800-7000" in body
    assert "AFMELDEN" in body and f"bin+u-{member.unsubscribe_token}@example.org" in body
    assert "ALLEEN SPOED" in body and "DAGELIJKS" in body and "ALLES" in body
    lowered = raw.lower()
    for leak in (b"received:", b"x-originating-ip", b"10.1.2.3", b"jan@example.net", b"jan de vries"):
        assert leak not in lowered


def test_english_member_gets_english(smtp_sink: RecordingSink, sessions: sessionmaker[Session],
                                     clock: FrozenClock) -> None:
    rt = runtime(smtp_sink, sessions, clock)
    now = clock.now()
    with sessions() as session, session.begin():
        add_members(session, "maaspoort", 1, now, prefix="en", language="en")
        item = approved_item(session, now, raw=report_bytes(), urgency="urgent")
        publish_alert(rt, session, item, decided_by="anna@example.org", now=now)
    deliver_pending(rt)
    [(_, _, raw)] = smtp_sink.messages
    message = parsed(raw)
    assert message["Subject"] == "[Maaspoort] URGENT Burglary: Inbraak Marathonloop"
    body = message.get_content()
    assert "Message from a resident of Maaspoort" in body and "call 112" in body


def test_header_injection_stays_one_line(smtp_sink: RecordingSink, sessions: sessionmaker[Session],
                                         clock: FrozenClock) -> None:
    rt = runtime(smtp_sink, sessions, clock)
    evil = "Inbraak\r\nBcc: evil@example.com\r\nX-Evil: 1"
    raw = report_bytes(sender="agent@politie.nl", attachment=b"\xff\xd8jpeg")
    publish(rt, members={"maaspoort": 1}, raw=raw, subject=evil, source="police",
            partner_name="Politie Oost-Brabant")
    deliver_pending(rt)
    [(_, _, raw_out)] = smtp_sink.messages
    message = parsed(raw_out)
    assert message["Bcc"] is None and message["X-Evil"] is None
    # One line; and the address in it is someone else's, so members see [e-mail].
    assert message["Subject"] == "[Maaspoort] Inbraak: Inbraak Bcc: [e-mail] X-Evil: 1"
    assert b"evil@example.com" not in raw_out


def test_attachments_partners_yes_residents_no(smtp_sink: RecordingSink, sessions: sessionmaker[Session],
                                              clock: FrozenClock) -> None:
    rt = runtime(smtp_sink, sessions, clock)
    photo = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40
    publish(rt, members={"maaspoort": 1}, raw=report_bytes(sender="agent@politie.nl", attachment=photo),
            source="police", partner_name="Politie Oost-Brabant")
    deliver_pending(rt)
    [(_, _, police_copy)] = smtp_sink.messages
    attachments = list(parsed(police_copy).iter_attachments())
    assert [a.get_filename() for a in attachments] == ["foto.jpg"]
    assert attachments[0].get_content() == photo
    assert "Bericht van Politie Oost-Brabant" in parsed(police_copy).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    smtp_sink.clear()
    publish(rt, members={"empel": 1}, raw=report_bytes(attachment=photo), wards=["empel"])
    deliver_pending(rt)
    [(_, _, resident_copy)] = smtp_sink.messages
    assert list(parsed(resident_copy).iter_attachments()) == []


def test_4xx_is_retried_with_backoff_then_delivered(smtp_sink: RecordingSink, sessions: sessionmaker[Session],
                                                   clock: FrozenClock) -> None:
    rt = runtime(smtp_sink, sessions, clock)
    smtp_sink.reject("maaspoort1@example.net", "450 4.2.1 mailbox busy", times=2)
    publish(rt)
    first = deliver_pending(rt)
    assert (first.sent, first.retried, first.failed) == (2, 1, 0)
    row = next(r for r in deliveries(sessions) if r.recipient == "maaspoort1@example.net")
    assert row.status == "pending" and row.attempts == 1 and "450" in (row.last_error or "")
    assert row.next_attempt_at == clock.now().replace(microsecond=0) + __import__("datetime").timedelta(seconds=60)
    assert deliver_pending(rt).sent == 0  # not due yet
    clock.advance(seconds=61)
    assert deliver_pending(rt).retried == 1  # second 450; next wait doubles
    clock.advance(seconds=61)
    assert deliver_pending(rt).sent == 0
    clock.advance(seconds=60)
    assert deliver_pending(rt).sent == 1
    assert sorted(by_recipient(smtp_sink)) == [f"maaspoort{i}@example.net" for i in range(3)]


def test_out_of_attempts_fails(smtp_sink: RecordingSink, sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    rt = runtime(smtp_sink, sessions, clock, max_attempts=2)
    smtp_sink.reject("maaspoort0@example.net", "451 4.3.0 later")
    publish(rt, members={"maaspoort": 1})
    assert deliver_pending(rt).retried == 1
    clock.advance(hours=1)
    assert deliver_pending(rt).failed == 1
    assert deliveries(sessions)[0].status == "failed"


def test_5xx_fails_counts_and_disables_with_a_coordinator_notice(
    smtp_sink: RecordingSink, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    rt = runtime(smtp_sink, sessions, clock, bounce_disable_threshold=2)
    smtp_sink.reject("maaspoort0@example.net", "550 5.1.1 user unknown")
    publish(rt, members={"maaspoort": 2})
    stats = deliver_pending(rt)
    # The alert copy and the warning to the member (one bounce before the pause) are refused.
    assert (stats.sent, stats.failed) == (1, 2)
    with sessions() as session:
        member = session.scalars(select(Member).where(Member.email == "maaspoort0@example.net")).one()
        assert member.bounce_score == 1 and member.status == "active"  # counted once a day
    smtp_sink.clear()
    clock.advance(days=1)
    now = clock.now()
    with sessions() as session, session.begin():
        item = approved_item(session, now, raw=report_bytes())
        publish_alert(rt, session, item, decided_by="anna@example.org", now=now)
    deliver_pending(rt)
    with sessions() as session:
        member = session.scalars(select(Member).where(Member.email == "maaspoort0@example.net")).one()
        assert member.bounce_score == 2 and member.status == "disabled"
    got = by_recipient(smtp_sink)
    assert sorted(got) == ["anna@example.org", "maaspoort1@example.net"]  # the notice went out in the same pass
    notice = parsed(got["anna@example.org"][0][1])
    assert "maaspoort0@example.net" in notice["Subject"]
    smtp_sink.clear()
    with sessions() as session, session.begin():
        item = approved_item(session, now, raw=report_bytes())
        publish_alert(rt, session, item, decided_by="anna@example.org", now=now)
    deliver_pending(rt)
    assert sorted(by_recipient(smtp_sink)) == ["maaspoort1@example.net"]  # disabled: no more alerts


def test_421_mid_session_recovers(smtp_sink: RecordingSink, sessions: sessionmaker[Session],
                                  clock: FrozenClock) -> None:
    rt = runtime(smtp_sink, sessions, clock)
    smtp_sink.close_after(3)
    publish(rt, members={"maaspoort": 12})
    total = 0
    for _ in range(10):
        total += deliver_pending(rt).sent
        clock.advance(minutes=20)
    assert total == 12
    got = by_recipient(smtp_sink)
    assert sorted(got) == sorted(f"maaspoort{i}@example.net" for i in range(12))
    assert all(len(copies) == 1 for copies in got.values())  # 421 before MAIL: nothing doubled
    assert smtp_sink.stats.closed_421 >= 2  # each of the two connections was cut at least once


def test_drop_after_data_may_resend_only_that_message(
    smtp_sink: RecordingSink, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    rt = runtime(smtp_sink, sessions, clock)
    smtp_sink.drop_after_data(1)
    publish(rt, members={"maaspoort": 6})
    first = deliver_pending(rt)
    assert (first.sent, first.retried) == (5, 1)
    clock.advance(minutes=2)
    assert deliver_pending(rt).sent == 1
    got = by_recipient(smtp_sink)
    assert sorted(got) == sorted(f"maaspoort{i}@example.net" for i in range(6))
    assert sorted(len(copies) for copies in got.values()) == [1, 1, 1, 1, 1, 2]  # the in-flight one


def test_stop_returns_promptly_and_releases_the_rest(
    smtp_sink: RecordingSink, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    rt = runtime(smtp_sink, sessions, clock)
    smtp_sink.data_delay = 0.2
    publish(rt, members={"maaspoort": 40})
    stop = threading.Event()
    timer = threading.Timer(0.5, stop.set)
    timer.start()
    try:
        stats = deliver_pending(rt, stop=stop)
    finally:
        timer.cancel()
    assert 0 < stats.sent < 40
    rows = deliveries(sessions)
    pending = [r for r in rows if r.status == "pending"]
    assert len(pending) == 40 - stats.sent
    assert all(r.claimed_by is None for r in pending)  # released: due again at once
    smtp_sink.data_delay = 0
    assert deliver_pending(rt).sent == len(pending)


def test_member_who_left_is_skipped(smtp_sink: RecordingSink, sessions: sessionmaker[Session],
                                    clock: FrozenClock) -> None:
    rt = runtime(smtp_sink, sessions, clock)
    publish(rt, members={"maaspoort": 2})
    with sessions() as session, session.begin():
        member = session.scalars(select(Member).where(Member.email == "maaspoort0@example.net")).one()
        member.status = "left"
    stats = deliver_pending(rt)
    assert (stats.sent, stats.skipped) == (1, 1)
    assert sorted(by_recipient(smtp_sink)) == ["maaspoort1@example.net"]


# ---------------------------------------------------------------- bounce messages


def dsn(failed: str, verp: str, status: str = "5.1.1") -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        f"To: {verp}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} user unknown\r\n\r\n"
        "--B--\r\n"
    ).encode()


def bounce_in(rt: Runtime, raw: bytes) -> None:
    now = rt.clock.now()
    with rt.sessions() as session, session.begin():
        message = Message(dedup_key=new_token() * 4, origin="test", received_at=now, size=len(raw),
                          raw=raw, status="new")
        session.add(message)
        session.flush()
        cls = ClassificationRecord(message_id=message.id, source="unknown", kind="bounce", wards=[], explanation=[],
                             created_at=now)
        handle_bounce(rt, session, message, parse_mail(raw), cls)


def test_bounce_messages_to_a_signed_return_path_count_and_disable(
        smtp_sink: RecordingSink, sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    rt = runtime(smtp_sink, sessions, clock, bounce_disable_threshold=2)
    publish(rt, members={"maaspoort": 2})
    deliver_pending(rt)
    row = next(r for r in deliveries(sessions) if r.recipient == "maaspoort1@example.net")
    verp = return_path(rt.config, rt.signer, row.id)
    # The report names another address (a forwarding alias): the signed return path decides whose it is.
    bounce_in(rt, dsn("someone-else-alias@example.net", verp))
    bounce_in(rt, dsn("someone-else-alias@example.net", verp, status="4.2.2"))  # soft: not counted
    with sessions() as session:
        member = session.scalars(select(Member).where(Member.email == "maaspoort1@example.net")).one()
        assert (member.bounce_score, member.status) == (1, "active")
        warned = list(session.scalars(select(Delivery).where(Delivery.purpose == "bounce_warning")))
        assert [w.recipient for w in warned] == ["maaspoort1@example.net"]
    bounce_in(rt, dsn("someone-else-alias@example.net", verp))  # the same day: counted once
    clock.advance(days=1)
    bounce_in(rt, dsn("someone-else-alias@example.net", verp))
    with sessions() as session:
        member = session.scalars(select(Member).where(Member.email == "maaspoort1@example.net")).one()
        assert (member.bounce_score, member.status) == (2, "disabled")
        notices = list(session.scalars(select(Delivery).where(Delivery.purpose == "bounce_notice")))
        assert [n.recipient for n in notices] == ["anna@example.org"]
        paused = list(session.scalars(select(Delivery).where(Delivery.purpose == "bounce_paused")))
        assert [n.recipient for n in paused] == ["maaspoort1@example.net"]


def test_the_score_decays_after_a_quiet_week(smtp_sink: RecordingSink, sessions: sessionmaker[Session],
                                            clock: FrozenClock) -> None:
    rt = runtime(smtp_sink, sessions, clock, bounce_disable_threshold=3)
    publish(rt, members={"maaspoort": 1})
    deliver_pending(rt)
    [row] = [r for r in deliveries(sessions) if r.recipient == "maaspoort0@example.net"]
    for _ in range(2):
        bounce_in(rt, dsn("maaspoort0@example.net", return_path(rt.config, rt.signer, row.id)))
        clock.advance(days=1)
    clock.advance(days=8)
    bounce_in(rt, dsn("maaspoort0@example.net", return_path(rt.config, rt.signer, row.id)))
    with sessions() as session:
        member = session.scalars(select(Member)).one()
        assert (member.bounce_score, member.status) == (1, "active")


@pytest.mark.parametrize("verp", ["bin@example.org", "bin+bounce-{id}@example.org",
                                  "bin+bounce-{id}-aaaaaaaaaaaaaaaa@example.org", "bin+bounce-{other}-{mac}@example.org"],
                         ids=["network address", "unsigned", "wrong signature", "another delivery's signature"])
def test_a_bounce_that_only_names_a_member_changes_nothing(
        smtp_sink: RecordingSink, sessions: sessionmaker[Session], clock: FrozenClock, verp: str) -> None:
    rt = runtime(smtp_sink, sessions, clock, bounce_disable_threshold=1)
    publish(rt, members={"maaspoort": 2})
    deliver_pending(rt)
    rows = {r.recipient: r.id for r in deliveries(sessions)}
    target, other = rows["maaspoort0@example.net"], rows["maaspoort1@example.net"]
    mac = return_path(rt.config, rt.signer, other).split("-")[-1].split("@")[0]
    bounce_in(rt, dsn("maaspoort0@example.net", verp.format(id=target, other=target, mac=mac)))
    with sessions() as session:
        assert [m.bounce_score for m in session.scalars(select(Member))] == [0, 0]


def test_each_ward_sees_its_own_tag_and_names(smtp_sink: RecordingSink, sessions: sessionmaker[Session],
                                              clock: FrozenClock) -> None:
    rt = runtime(smtp_sink, sessions, clock, resident_attachments=True)
    publish(rt, members={"maaspoort": 1, "empel": 1}, wards=["empel", "maaspoort"],
            raw=report_bytes(attachment=b"\xff\xd8jpeg"))
    deliver_pending(rt)
    got = {address: parsed(copies[0][1]) for address, copies in by_recipient(smtp_sink).items()}
    assert got["empel0@example.net"]["Subject"].startswith("[Empel] Inbraak: ")
    assert got["maaspoort0@example.net"]["Subject"].startswith("[Maaspoort] Inbraak: ")
    assert got["empel0@example.net"]["List-Id"] == "BIN Den Bosch Empel <empel.bin.example.org>"
    assert got["empel0@example.net"]["From"].addresses[0].display_name == "BIN Den Bosch Empel"
    for message in got.values():
        assert [a.get_filename() for a in message.iter_attachments()] == ["foto.jpg"]


def test_a_broken_template_retries_instead_of_stalling(smtp_sink: RecordingSink, sessions: sessionmaker[Session],
                                                      clock: FrozenClock, tmp_path: Path) -> None:
    (tmp_path / "nl").mkdir()
    (tmp_path / "nl" / "alert.txt.j2").write_text("Subject: {{ no_such_value }}\n\nx\n", encoding="utf-8")
    config = make_config(smtp_sink.port)
    config = config.model_copy(update={"templates": TemplatesConfig(directory=tmp_path)})
    rt = build_runtime(config, sessions, clock)
    publish(rt, members={"maaspoort": 3})
    stats = deliver_pending(rt)
    assert (stats.sent, stats.retried) == (0, 3)
    assert all("internal error" in (row.last_error or "") for row in deliveries(sessions))
    assert smtp_sink.messages == []


def test_non_ascii_names_are_encoded_and_read_back(smtp_sink: RecordingSink, sessions: sessionmaker[Session],
                                                  clock: FrozenClock) -> None:
    config = make_config(smtp_sink.port)
    ward = config.wards[0].model_copy(update={"name": "Sint-Michiëlsgestel \"Oost\""})
    config = config.model_copy(update={"wards": [ward, *config.wards[1:]]})
    rt = build_runtime(config, sessions, clock)
    long_subject = "Verdachte situatie bij de Zuid-Willemsvaart – één persoon met zaklamp " * 3
    publish(rt, members={"maaspoort": 1}, subject=long_subject)
    deliver_pending(rt)
    [(_, _, raw)] = smtp_sink.messages
    head = raw.split(b"\r\n\r\n")[0]
    assert head.isascii()
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    message = parsed(raw)
    assert message["Subject"].startswith('[Sint-Michiëlsgestel "Oost"] Inbraak: Verdachte situatie')
    assert message["From"].addresses[0].display_name == 'BIN Den Bosch Sint-Michiëlsgestel "Oost"'


class TakeoverClock:
    """Frozen until the first message arrived; then an hour later, and another process took the rest."""

    def __init__(self, start: datetime, sink: RecordingSink, sessions: sessionmaker[Session]) -> None:
        self._now, self._sink, self._sessions = start, sink, sessions
        self._jumped = False

    def now(self) -> datetime:
        if not self._jumped and self._sink.messages:
            self._jumped = True
            self._now += timedelta(hours=1)
            with self._sessions() as session, session.begin():
                workers.register(session, "other-process", "elsewhere", 1, self._now)
                claim_due(session, "other-process", self._now, 100, timedelta(minutes=5))
        return self._now


def test_a_job_whose_claim_expired_is_not_sent(smtp_sink: RecordingSink, sessions: sessionmaker[Session],
                                               clock: FrozenClock) -> None:
    config = make_config(smtp_sink.port)
    config = config.model_copy(update={"smtp": config.smtp.model_copy(update={"connections": 1})})
    rt = build_runtime(config, sessions, clock)
    publish(rt, members={"maaspoort": 3})
    rt.clock = TakeoverClock(clock.now(), smtp_sink, sessions)
    stats = deliver_pending(rt)
    assert stats.sent == 1 and len(smtp_sink.messages) == 1
    rest = [row for row in deliveries(sessions) if row.status == "pending"]
    assert len(rest) == 2 and {row.claimed_by for row in rest} == {"other-process"}


def test_an_unreachable_server_stops_the_pass_at_once(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    with RecordingSink() as sink:
        port = sink.port  # closed again: nothing listens here any more
    rt = build_runtime(make_config(port), sessions, clock)
    publish(rt, members={"maaspoort": 30})
    stats = deliver_pending(rt)
    assert stats.sent == 0 and 1 <= stats.retried <= rt.config.smtp.connections
    rows = deliveries(sessions)
    # Released, not charged an attempt: an outage is not the recipients' fault.
    assert all(row.status == "pending" and row.claimed_by is None and row.attempts == 0 for row in rows)
    assert stats.retried < len(rows)


def test_connections_are_kept_between_passes(
    smtp_sink: RecordingSink, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    rt = runtime(smtp_sink, sessions, clock)

    def another_alert() -> None:
        with rt.sessions() as session, session.begin():
            item = approved_item(session, clock.now(), raw=report_bytes())
            publish_alert(rt, session, item, decided_by="anna@example.org", now=clock.now())

    publish(rt, members={"maaspoort": 6})
    assert deliver_pending(rt).sent == 6
    opened = smtp_sink.stats.sessions
    another_alert()
    assert deliver_pending(rt).sent == 6
    assert smtp_sink.stats.sessions == opened  # the second pass used the same sessions
    smtp_sink.hang_up()  # the server's idle timeout before the next pass
    time.sleep(0.2)
    another_alert()
    stats = deliver_pending(rt)
    assert (stats.sent, stats.retried, stats.failed) == (6, 0, 0)  # reopened, no try counted
    close_connections(rt)
    assert len(smtp_sink.messages) == 18
