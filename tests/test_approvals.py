"""Holding messages: who is asked, and what the approval request shows."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from relay.config import parse_config
from relay.service.clock import FrozenClock
from relay.service.runtime import build_runtime
from relay.service.tokens import token_hash
from storage.models import Alert, QueueItem
from tests import mailgen
from tests.test_approvals_helpers import (
    ANNA,
    BERT,
    CARLA,
    KEES,
    MEMBER,
    NETWORK,
    approval_config,
    config_dict,
    hold_message,
    item,
    outbox,
    report,
)


def test_member_report_asks_the_ward_coordinators_with_a_token(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    requests = outbox(rt.sessions, "approval_request")
    assert sorted(sent.recipient for sent in requests) == [ANNA, BERT]
    first = requests[0]
    token = first.token
    assert token is not None
    assert first.subject == f"[BIN-{token}] Inbraak Maaspoort: Ingebroken in schuur"
    assert first.message["Reply-To"] == f"bin+{token}@example.org"
    assert {sent.token for sent in requests} == {token}
    body = first.body
    assert "Van:        buurtbewoner uit Maaspoort\r\n" in body
    assert MEMBER not in first.message.as_string()  # a member's address is never shown
    assert "rule 'inbraak' matched 'ingebroken'" in body
    assert "Vannacht is er ingebroken in mijn schuur." in body
    assert "AKKOORD" in body and "AFWIJZEN" in body and "WIJZIG" in body and "WIJK" in body and "POLITIE" in body
    stored = item(rt.sessions, item_id)
    assert stored.status == "pending" and stored.kind == "report" and stored.proposed_wards == ["maaspoort"]
    assert stored.token_hash == token_hash(token)
    with rt.sessions() as session:  # the token itself is nowhere in the queue
        assert token not in repr([tuple(row) for row in session.execute(select(QueueItem.__table__))])


def test_resident_gets_a_receipt_but_not_an_unknown_sender(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    hold_message(rt, report())
    hold_message(rt, report(subject="Koop goedkope zonnepanelen", sender="spam@example.com"), source="unknown")
    receipts = outbox(rt.sessions, "answer_received")
    assert [sent.recipient for sent in receipts] == [MEMBER]
    assert "112" in receipts[0].body
    assert receipts[0].message["Auto-Submitted"] == "auto-replied"


def test_no_receipt_when_switched_off(engine: Engine, clock: FrozenClock) -> None:
    config = parse_config(config_dict(approval={"acknowledge_reports": False}))
    rt = build_runtime(config, engine, clock)
    hold_message(rt, report())
    assert outbox(rt.sessions, "answer_received") == []


def test_partner_message_names_the_partner(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    raw = report(subject="Getuigen gezocht", body="De politie zoekt getuigen.", sender="wijkagent@politie.nl")
    item_id = hold_message(rt, raw, source="police", partner="Politie Oost-Brabant", category="info")
    body = outbox(rt.sessions, "approval_request")[0].body
    assert "Van:        Politie Oost-Brabant" in body
    assert item(rt.sessions, item_id).kind == "report"
    assert outbox(rt.sessions, "answer_received") == []


def test_unknown_sender_is_flagged(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report(sender="vreemde@example.com"), source="unknown")
    stored = item(rt.sessions, item_id)
    assert stored.kind == "unknown_sender"
    assert {"kind": "unknown_sender", "evidence": "vreemde@example.com"} in stored.warnings
    body = outbox(rt.sessions, "approval_request")[0].body
    assert "ONBEKENDE afzender vreemde@example.com" in body
    assert "geen lid en geen bekende partner" in body


def test_no_ward_or_a_ward_without_coordinators_goes_network_wide(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    hold_message(rt, report(subject="Zonder wijk"), wards=())
    hold_message(rt, report(subject="Binnenstad"), wards=("binnenstad",))
    hold_message(rt, report(subject="Twee wijken"), wards=("empel", "maaspoort"))
    by_subject: dict[str, set[str]] = {}
    for sent in outbox(rt.sessions, "approval_request"):
        by_subject.setdefault(sent.subject.rsplit(": ", 1)[1], set()).add(sent.recipient)
    assert by_subject == {"Zonder wijk": {KEES}, "Binnenstad": {KEES}, "Twee wijken": {ANNA, BERT, CARLA}}
    assert any("hele netwerk" in sent.subject for sent in outbox(rt.sessions, "approval_request"))


def test_request_lists_attachments_warnings_and_trims_long_text(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    long_text = "\n".join(f"Regel {n}: de man liep langs de Marathonloop 12." for n in range(400))
    plain = mailgen.message("Verdacht", long_text, sender=f"Jan <{MEMBER}>", message_id="x1@example.net")
    photo = (
        b"--b1\r\nContent-Type: image/jpeg; name=\"foto.jpg\"\r\nContent-Disposition: attachment; "
        b"filename=\"foto.jpg\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b"/9j/4AAQSkZJRg==\r\n" * 200
    )
    head, _, body = plain.partition(b"\r\n\r\n")
    head = head.replace(b"Content-Type: text/plain", b"X-Old: text/plain")
    raw = (
        head + b"\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + body + b"\r\n" + photo + b"--b1--\r\n"
    )
    item_id = hold_message(rt, raw, category="suspicious")
    text = outbox(rt.sessions, "approval_request")[0].body
    assert "foto.jpg (image/jpeg, " in text
    assert "Regel 0:" in text and "Regel 399:" not in text and "tekens weggelaten" in text
    assert len(text) < 12000
    kinds = {w["kind"] for w in item(rt.sessions, item_id).warnings}
    assert {"photo", "home_address"} <= kinds
    assert "foto (mogelijk herkenbaar persoon)" in text and "huisadres: Marathonloop 12" in text


def test_english_network_gets_english_requests(engine: Engine, clock: FrozenClock) -> None:
    config = parse_config(config_dict(network={"language": "en"}))
    rt = build_runtime(config, engine, clock)
    hold_message(rt, report(), category="theft")
    sent = outbox(rt.sessions, "approval_request")[0]
    assert sent.subject.endswith("] Theft Maaspoort: Ingebroken in schuur")
    assert "APPROVE" in sent.body and "From:       resident of Maaspoort" in sent.body


def test_urgent_items_are_reminded_sooner(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    urgent = item(rt.sessions, hold_message(rt, report(subject="Nu bezig"), urgency="urgent"))
    normal = item(rt.sessions, hold_message(rt, report(subject="Gisteren")))
    now = clock.now()
    assert urgent.remind_at == now + timedelta(minutes=30) and urgent.escalate_at == now + timedelta(minutes=60)
    assert normal.remind_at == now + timedelta(minutes=240) and normal.escalate_at == now + timedelta(minutes=480)
    assert urgent.expires_at == normal.expires_at == now + timedelta(hours=48)
    assert outbox(rt.sessions, "approval_request")[0].subject.startswith("[BIN-")
    assert " SPOED Inbraak" in outbox(rt.sessions, "approval_request")[0].subject


def _alert(rt_sessions: object, clock: FrozenClock) -> int:
    with rt_sessions() as session, session.begin():  # type: ignore[operator]
        alert = Alert(
            queue_item_id=None, wards=["maaspoort"], source="police", source_label="Politie Oost-Brabant",
            original_sender="wijkagent@politie.nl", category="info", urgency="normal", subject="Getuigen gezocht",
            body="Wie heeft iets gezien?", attachments=[], message_id_header="<alert-k3lmn4@example.org>",
            tag="k3lmn4", created_at=clock.now(),
        )
        session.add(alert)
        session.flush()
        return int(alert.id)


def test_member_reply_to_an_alert_is_linked_by_references(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    alert_id = _alert(rt.sessions, clock)
    raw = report(subject="Re: Getuigen gezocht", body="Ik zag een scooter wegrijden.",
                 **{"In-Reply-To": "<alert-k3lmn4.42@example.org>",
                    "References": "<other@example.net> <alert-k3lmn4.42@example.org>"})
    item_id = hold_message(rt, raw, category="info", wards=())
    stored = item(rt.sessions, item_id)
    assert stored.kind == "reply_to_alert" and stored.alert_id == alert_id
    assert stored.proposed_recipient == "wijkagent@politie.nl"
    assert stored.proposed_wards == ["maaspoort"]
    body = outbox(rt.sessions, "approval_request")[0].body
    assert "Getuigen gezocht" in body and "wijkagent@politie.nl" in body


def test_member_reply_to_an_alert_is_linked_by_its_tag_address(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    alert_id = _alert(rt.sessions, clock)
    raw = mailgen.message("Re: Getuigen gezocht", "Ik zag iets.", sender=f"Jan <{MEMBER}>",
                          to="bin+a-k3lmn4@example.org", message_id="tagged@example.net")
    stored = item(rt.sessions, hold_message(rt, raw, category="info"))
    assert stored.kind == "reply_to_alert" and stored.alert_id == alert_id


def test_an_unrelated_reference_is_an_ordinary_report(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    _alert(rt.sessions, clock)
    raw = report(**{"In-Reply-To": "<something-else@example.org>"})
    stored = item(rt.sessions, hold_message(rt, raw))
    assert stored.kind == "report" and stored.alert_id is None


def test_the_network_address_is_not_asked_to_reply(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    hold_message(rt, report())
    assert all(sent.recipient != NETWORK for sent in outbox(rt.sessions))


def test_a_flooding_sender_yields_one_summary_request(engine: Engine, clock: FrozenClock) -> None:
    from mail.message import parse_mail
    from relay.approvals.requests import hold
    from relay.routing.flood import over_limit
    from tests.test_approvals_helpers import store

    config = parse_config(config_dict(limits={"sender_messages_per_hour": 2}))
    rt = build_runtime(config, engine, clock)
    for number in range(5):
        raw = report(subject=f"Melding {number}")
        with rt.sessions() as session, session.begin():
            message = store(rt, session, raw)
            assert message.classification is not None
            if not over_limit(rt, session, message, message.classification):
                hold(rt, session, message, parse_mail(raw), message.classification)
    with rt.sessions() as session:
        items = list(session.scalars(select(QueueItem).order_by(QueueItem.id)))
    assert [i.kind for i in items] == ["report", "report", "flood_summary"]
    flood = next(w for w in items[2].warnings if w["kind"] == "flood")
    assert flood["count"] == 5 and flood["sender"] == MEMBER
    requests = outbox(rt.sessions, "approval_request")
    assert len(requests) == 3 * 2  # two reports and one summary, each to the two coordinators
    assert "meer berichten dan toegestaan" in requests[-1].body


def test_alert_tag_in_delivered_to_links_a_bcc_style_reply(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    alert_id = _alert(rt.sessions, clock)
    raw = mailgen.message("Re: Getuigen gezocht", "Ik zag iets.", sender=f"Jan <{MEMBER}>", to=NETWORK,
                          message_id="delivered@example.net",
                          headers={"Delivered-To": "bin+a-k3lmn4@example.org"})
    stored = item(rt.sessions, hold_message(rt, raw, category="info"))
    assert stored.kind == "reply_to_alert" and stored.alert_id == alert_id


def test_operator_can_override_the_request_template(engine: Engine, clock: FrozenClock, tmp_path: Path) -> None:
    (tmp_path / "nl").mkdir()
    (tmp_path / "nl" / "approval_request.txt.j2").write_text(
        "Subject: [BIN-{{ token }}] Graag uw oordeel: {{ original_subject }}\n\nEigen tekst van {{ network.name }}.\n",
        encoding="utf-8",
    )
    config = parse_config(config_dict(templates={"directory": str(tmp_path)}))
    rt = build_runtime(config, engine, clock)
    hold_message(rt, report())
    sent = outbox(rt.sessions, "approval_request")[0]
    assert sent.subject == f"[BIN-{sent.token}] Graag uw oordeel: Ingebroken in schuur"
    assert sent.body.strip() == "Eigen tekst van BIN Test."
