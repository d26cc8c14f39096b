"""publish_alert and forward_reply: what lands in the outbox, before any SMTP."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from relay.delivery.alerts import forward_reply, publish_alert
from relay.service.clock import FrozenClock
from relay.service.runtime import build_runtime
from storage.models import Alert, Delivery
from tests.delivery_world import add_members, approved_item, make_config, report_bytes


def test_one_row_per_active_member_of_the_target_wards(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    rt = build_runtime(make_config(25), sessions, clock)
    now = clock.now()
    with sessions() as session, session.begin():
        maaspoort = add_members(session, "maaspoort", 5, now)
        add_members(session, "empel", 3, now)
        maaspoort[0].status = "disabled"
        item = approved_item(session, now, raw=report_bytes())
        alert = publish_alert(rt, session, item, decided_by="anna@example.org", now=now)
        alert_id = alert.id
    with sessions() as session:
        stored = session.get(Alert, alert_id)
        assert stored is not None
        alert = stored
        rows = list(session.scalars(select(Delivery).where(Delivery.alert_id == alert_id)))
        assert sorted(r.recipient for r in rows) == [f"maaspoort{i}@example.net" for i in range(1, 5)]
        assert all(r.status == "pending" and r.raw is None and r.member_id for r in rows)
        assert alert.wards == ["maaspoort"]
        assert alert.source_label == "een buurtbewoner uit Maaspoort"
        assert alert.original_sender == "jan@example.net"
        assert alert.message_id_header == f"<alert-{alert.tag}@example.org>"
        assert alert.fanned_out_at == now


def test_target_wards_and_edited_text_win(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    rt = build_runtime(make_config(25), sessions, clock)
    now = clock.now()
    with sessions() as session, session.begin():
        add_members(session, "maaspoort", 2, now)
        add_members(session, "empel", 2, now)
        item = approved_item(session, now, raw=report_bytes(), edited_text="Nieuwe tekst")
        item.target_wards = ["empel"]
        alert = publish_alert(rt, session, item, decided_by="anna@example.org", now=now)
        assert alert.body == "Nieuwe tekst"
        rows = list(session.scalars(select(Delivery).where(Delivery.alert_id == alert.id)))
        assert sorted(r.recipient for r in rows) == ["empel0@example.net", "empel1@example.net"]


def test_partner_label_and_partner_attachments(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    rt = build_runtime(make_config(25), sessions, clock)
    now = clock.now()
    with sessions() as session, session.begin():
        police = approved_item(session, now, source="police", partner_name="Politie Oost-Brabant",
                               raw=report_bytes(sender="agent@politie.nl", attachment=b"\xff\xd8jpeg"))
        resident = approved_item(session, now, raw=report_bytes(attachment=b"\xff\xd8jpeg"))
        police_alert = publish_alert(rt, session, police, decided_by="anna@example.org", now=now)
        resident_alert = publish_alert(rt, session, resident, decided_by="anna@example.org", now=now)
        assert police_alert.source_label == "Politie Oost-Brabant"
        assert [a["filename"] for a in police_alert.attachments] == ["foto.jpg"]
        assert resident_alert.attachments == []


def test_resident_attachments_pass_when_configured(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    rt = build_runtime(make_config(25, resident_attachments=True), sessions, clock)
    now = clock.now()
    with sessions() as session, session.begin():
        item = approved_item(session, now, raw=report_bytes(attachment=b"\xff\xd8jpeg"))
        alert = publish_alert(rt, session, item, decided_by="anna@example.org", now=now)
        assert [a["filename"] for a in alert.attachments] == ["foto.jpg"]


def test_partner_notice_carries_the_reporters_contact_details(
    sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    rt = build_runtime(make_config(25), sessions, clock)
    now = clock.now()
    with sessions() as session, session.begin():
        reporter = add_members(session, "empel", 1, now, prefix="jan", postcode="5235AB")[0]
        item = approved_item(session, now, raw=report_bytes(sender=f"Jan de Vries <{reporter.email}>"),
                             from_address=reporter.email, wards=["empel"], partners=["police", "municipality"])
        alert = publish_alert(rt, session, item, decided_by="piet@example.org", now=now)
        notices = list(session.scalars(select(Delivery).where(Delivery.purpose == "partner_forward")))
        assert alert.source_label == "een buurtbewoner uit Empel"
    assert sorted(n.recipient for n in notices) == ["agent.empel@politie.nl", "wijkmanager@s-hertogenbosch.nl"]
    for notice in notices:
        assert notice.raw is not None
        message = message_from_bytes(notice.raw, policy=default)
        body = message.get_content()
        assert "Bewoner 0" in body and reporter.email in body and "5235AB" in body
        assert "Vannacht is ingebroken" in body
        assert message["Reply-To"] == reporter.email


def test_forward_reply_goes_to_the_original_sender_only(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    rt = build_runtime(make_config(25), sessions, clock)
    now = clock.now()
    with sessions() as session, session.begin():
        add_members(session, "maaspoort", 3, now)
        police = approved_item(session, now, source="police", partner_name="Politie Oost-Brabant",
                               raw=report_bytes(sender="agent@politie.nl"), from_address="agent@politie.nl")
        alert = publish_alert(rt, session, police, decided_by="anna@example.org", now=now)
        reply = approved_item(session, now, raw=report_bytes(subject="Re: inbraak", body="Ik zag een witte bus.\n"),
                              subject="Re: inbraak")
        reply.kind = "reply_to_alert"
        reply.alert_id = alert.id
        reply.proposed_recipient = "agent@politie.nl"
        before = session.scalar(select(Delivery.id).order_by(Delivery.id.desc()).limit(1))
        row = forward_reply(rt, session, reply, now=now)
        assert row is not None
        session.flush()
        new = list(session.scalars(select(Delivery).where(Delivery.id > before)))
    assert [r.recipient for r in new] == ["agent@politie.nl"]
    assert new[0].raw is not None
    message = message_from_bytes(new[0].raw, policy=default)
    assert "Ik zag een witte bus." in message.get_content()
    assert message["In-Reply-To"] == alert.message_id_header


def test_a_residents_name_and_address_are_not_forwarded(sessions: sessionmaker[Session], clock: FrozenClock) -> None:
    rt = build_runtime(make_config(25), sessions, clock)
    now = clock.now()
    body = ("Er loopt nu een man aan autoportieren te trekken op het Olympiaplein.\n"
            "Bel me op els.jansen@bewoners.nl als u meer weet.\n\nGroetjes Els Jansen\nEls\n")
    with sessions() as session, session.begin():
        reporter = add_members(session, "maaspoort", 1, now, prefix="els")[0]
        reporter.name = "Els Jansen"
        raw = report_bytes(sender="Els Jansen <els.jansen@bewoners.nl>", body=body)
        item = approved_item(session, now, raw=raw, from_address="els.jansen@bewoners.nl", partners=["police"])
        alert = publish_alert(rt, session, item, decided_by="anna@example.org", now=now)
        [notice] = list(session.scalars(select(Delivery).where(Delivery.purpose == "partner_forward")))
    assert alert.body is not None
    assert "Els" not in alert.body and "Jansen" not in alert.body and "bewoners.nl" not in alert.body
    assert "Groetjes [naam]" in alert.body and "[e-mail]" in alert.body
    assert "autoportieren te trekken op het Olympiaplein" in alert.body
    assert notice.raw is not None
    partner_text = message_from_bytes(notice.raw, policy=default).get_content()
    assert "Groetjes Els Jansen" in partner_text  # the police get the reporter's own words


def test_a_partners_text_and_a_coordinators_edit_are_kept(sessions: sessionmaker[Session],
                                                          clock: FrozenClock) -> None:
    rt = build_runtime(make_config(25), sessions, clock)
    now = clock.now()
    with sessions() as session, session.begin():
        police = approved_item(session, now, source="police", partner_name="Politie Oost-Brabant",
                               raw=report_bytes(sender="Wijkagent Jansen <agent@politie.nl>",
                                                body="Groet, wijkagent Jansen\n"))
        edited = approved_item(session, now, raw=report_bytes(sender="Els Jansen <els@bewoners.nl>"),
                               edited_text="Els Jansen zag iets.")
        assert publish_alert(rt, session, police, decided_by="a@example.org", now=now).body == "Groet, wijkagent Jansen"
        assert publish_alert(rt, session, edited, decided_by="a@example.org", now=now).body == "Els Jansen zag iets."
