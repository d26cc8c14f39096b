"""The mission end to end: IMAP in, classification, approval by reply, SMTP out.

Real Dovecot, real aiosmtpd sink, real SQLite; only the clock is controlled.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

import pytest

from relay.devservers.dovecot import PrivateDovecot
from relay.devservers.stack import LoopbackStack, compose, reply
from relay.service.clock import FrozenClock
from tests.e2e import ANNA, BERT, EMPEL, KEES, MAASPOORT, POLICE, make_stack, only, text_of

pytestmark = pytest.mark.dovecot

ALERT_BODY = (
    "Beste bewoners,\n\nVannacht rond 03:00 uur is ingebroken in een woning aan de Marathonloop. "
    "De daders forceerden een achterraam. Heeft u iets gezien? Bel 0900-8844.\n\n"
    "Met vriendelijke groet,\nWijkagent Maaspoort\n"
)
REPORT_BODY = (
    "Hoi, er loopt nu een man aan de portieren van geparkeerde auto's te trekken op het "
    "Olympiaplein, grijze hoodie.\n\nGroetjes Els\n"
)


def police_alert(stack: LoopbackStack) -> None:
    stack.mail_in(compose(sender=POLICE, subject="Woninginbraak Marathonloop", body=ALERT_BODY))
    stack.run_once()


def resident_report(stack: LoopbackStack) -> None:
    stack.mail_in(compose(sender=f"Els <{MAASPOORT[0]}>", subject="verdachte man", body=REPORT_BODY))
    stack.run_once()


def approve(
    stack: LoopbackStack, coordinator: str, text: str = "AKKOORD", request: EmailMessage | None = None
) -> None:
    request = request or stack.approval_requests(coordinator)[-1]
    stack.sink.clear()
    stack.mail_in(reply(request, sender=coordinator, text=text))
    stack.run_once()


def test_police_alert_reaches_every_ward_member_once_and_privately(stack: LoopbackStack) -> None:
    police_alert(stack)
    request = only(stack.approval_requests(ANNA))
    assert stack.approval_requests(BERT) == []  # not Empel's business
    assert "Politie Oost-Brabant" in text_of(request)

    approve(stack, ANNA, "Akkoord\n\nVerzonden vanaf mijn iPhone")

    for member in MAASPOORT:
        alert = only(stack.sent_to(member))
        assert [a for _n, a in getaddresses([str(alert["To"])])] == [member]
        assert "Maaspoort" in str(alert["Subject"])
        assert "Politie Oost-Brabant" in text_of(alert)
        assert "Marathonloop" in text_of(alert)
        raw = alert.as_string()
        for other in [*MAASPOORT, *EMPEL]:
            if other != member:
                assert other not in raw  # no member ever sees another's address
        assert "wijkagent.maaspoort@politie.nl" not in str(alert["From"])
        assert alert["List-Unsubscribe"]
    for member in EMPEL:
        assert stack.sent_to(member) == []


def test_second_decision_is_told_who_decided(stack: LoopbackStack) -> None:
    police_alert(stack)
    request = only(stack.approval_requests(ANNA))
    approve(stack, ANNA)
    delivered = len(stack.sink.messages)
    assert delivered >= len(MAASPOORT)

    stack.sink.clear()
    stack.mail_in(reply(request, sender=KEES, text="AFWIJZEN"))  # network-wide, but too late
    stack.run_once()
    answer = only(stack.sent_to(KEES))
    assert ANNA in text_of(answer) or "anna" in text_of(answer).lower()
    assert all(stack.sent_to(member) == [] for member in MAASPOORT)  # nothing sent again


def test_rejected_report_gets_a_friendly_answer_and_goes_nowhere(stack: LoopbackStack) -> None:
    resident_report(stack)
    assert only(stack.approval_requests(ANNA))
    approve(stack, ANNA, "AFWIJZEN dit is al bekend bij de politie")
    answer = only(stack.sent_to(MAASPOORT[0]))
    assert "al bekend bij de politie" in text_of(answer)
    for member in MAASPOORT[1:] + EMPEL:
        assert stack.sent_to(member) == []


def test_edit_and_police_forward(stack: LoopbackStack) -> None:
    resident_report(stack)
    approve(stack, ANNA, "WIJZIG\nIemand probeerde autoportieren te openen op het Olympiaplein.\nPOLITIE")
    for member in MAASPOORT:
        alert = only(stack.sent_to(member))
        body = text_of(alert)
        assert "Iemand probeerde autoportieren te openen" in body
        assert "Groetjes Els" not in body  # the edit replaces the resident's own words
        if member != MAASPOORT[0]:
            assert MAASPOORT[0] not in alert.as_string()  # the resident stays anonymous
    forward = only(stack.sent_to("wijkagent@politie.nl"))
    assert MAASPOORT[0] in text_of(forward)  # the police may need the contact


def test_a_stranger_cannot_decide(stack: LoopbackStack) -> None:
    police_alert(stack)
    request = only(stack.approval_requests(ANNA))
    stack.sink.clear()
    forged = reply(request, sender="Anna <anna@coordinatoren.nl.evil.example>", text="AKKOORD")
    stack.mail_in(forged)
    stack.run_once()
    for member in MAASPOORT:
        assert stack.sent_to(member) == []
    approve(stack, ANNA, request=request)  # the real coordinator still can
    assert all(len(stack.sent_to(member)) == 1 for member in MAASPOORT)


def test_member_reply_to_an_alert_goes_to_the_original_sender(stack: LoopbackStack) -> None:
    police_alert(stack)
    approve(stack, ANNA)
    alert = only(stack.sent_to(MAASPOORT[1]))
    stack.sink.clear()
    stack.mail_in(reply(alert, sender=MAASPOORT[1], text="Ik heb camerabeelden van 03:10 uur."))
    stack.run_once()
    request = only(stack.approval_requests(ANNA))
    assert "camerabeelden" in text_of(request)
    approve(stack, ANNA)
    forwarded = only(stack.sent_to("wijkagent.maaspoort@politie.nl"))
    assert "camerabeelden van 03:10" in text_of(forwarded)
    for member in MAASPOORT + EMPEL:
        assert stack.sent_to(member) == []  # not to the whole ward


def test_subscribe_confirm_and_unsubscribe_by_email(stack: LoopbackStack) -> None:
    newcomer = "nieuw@bewoners.nl"
    stack.mail_in(compose(sender=newcomer, subject="AANMELDEN Maaspoort", body=""))
    stack.run_once()
    confirmation = only(stack.sent_to(newcomer))
    stack.sink.clear()
    stack.mail_in(reply(confirmation, sender=newcomer, text="ja"))
    stack.run_once()
    assert stack.sent_to(newcomer)  # welcome

    police_alert(stack)
    approve(stack, ANNA)
    assert only(stack.sent_to(newcomer))

    stack.sink.clear()
    stack.mail_in(compose(sender=newcomer, subject="AFMELDEN", body=""))
    stack.run_once()
    stack.sink.clear()
    police_alert(stack)
    approve(stack, ANNA)
    assert stack.sent_to(newcomer) == []


def test_auto_replies_and_loops_are_never_answered(stack: LoopbackStack) -> None:
    stack.mail_in(compose(
        sender=MAASPOORT[2], subject="Afwezig: Woninginbraak", body="Ik ben met vakantie.",
        headers={"Auto-Submitted": "auto-replied"},
    ))
    stack.mail_in(compose(
        sender="BIN Demostad <bin@bin-demo.nl>", subject="[Maaspoort] Inbraak", body="terug",
        headers={"X-Loop": "bin@bin-demo.nl"},
    ))
    stack.run_once()
    assert stack.sink.messages == []


def test_every_alert_ends_with_the_configured_standing_advice(
    tmp_path: Path, dovecot_server: PrivateDovecot, clock: FrozenClock
) -> None:
    advice = {"emergency": "112", "police": "101", "anonymous_name": "Child Focus", "anonymous": "116 000"}
    belgian = make_stack(tmp_path, dovecot_server, clock, config={"advice": advice})
    try:
        police_alert(belgian)
        approve(belgian, ANNA)
        body = text_of(only(belgian.sent_to(MAASPOORT[0])))
        assert "bel 112" in body and "Geen spoed: 101." in body and "Child Focus 116 000" in body
        assert "0900-8844" not in body.split("--")[-1]
    finally:
        belgian.stop()
