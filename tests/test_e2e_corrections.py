"""Coordinators correct the rules' urgency and category by reply, end to end.

Real Dovecot, real SMTP sink, real SQLite; the replies are real clients' formats
(tests/replies/*.eml, re-addressed to the request they answer).
"""

from __future__ import annotations

import email
import email.policy
import io
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest

from relay.cli.queue import queue_show
from relay.devservers.stack import LoopbackStack, compose, reply, verdict
from relay.jobs.report import report_command
from relay.service.runtime import Runtime
from storage.queue import item_by_id, pending_items
from tests.e2e import ANNA, EMPEL, MAASPOORT, only, text_of

pytestmark = pytest.mark.dovecot

REPLIES = Path(__file__).parent / "replies"
SUSPICIOUS = ("verdachte man", ("Hoi, er loopt nu een man aan de portieren van geparkeerde auto's te trekken op "
                                 "het Olympiaplein, grijze hoodie.\n\nGroetjes Els\n"))
# A doorstep trick the rules do not recognise as fraud (if they learn to, pick another text here).
DOORSTEP = ("man in de tuin", ("Er stond vanmiddag een man met een hesje van het waterbedrijf in onze tuin aan "
                              "het Olympiaplein. Hij wilde de watermeter zien en vroeg 50 euro.\n\nEls\n"))
SMOKE_ALARM = ("rookmelder", ("Bij de buren aan de Marathonloop gaat op dit moment de rookmelder af, er is "
                              "niemand thuis.\n\nEls\n"))


def resident_report(stack: LoopbackStack, subject: str, body: str) -> tuple[EmailMessage, int]:
    """A Maaspoort resident's report, routed: the approval request Anna gets, and the queue item's id."""
    stack.mail_in(compose(sender=f"Els <{MAASPOORT[0]}>", subject=subject, body=body))
    stack.run_once()
    with runtime(stack).sessions() as session:
        item_id = pending_items(session)[-1].id
    return stack.approval_requests(ANNA)[-1], item_id


def client_reply(fixture: str, request: EmailMessage, sender: str, now: datetime) -> bytes:
    """A real client's reply (tests/replies/<fixture>) as that client would send it to ``request``."""
    message = email.message_from_bytes((REPLIES / fixture).read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    headers = {
        "From": sender, "To": str(request["Reply-To"]), "Subject": f"Antw: {request['Subject']}",
        "Message-ID": make_msgid(domain=sender.rsplit("@", 1)[1]), "Date": format_datetime(now),
        "In-Reply-To": str(request["Message-ID"]), "References": str(request["Message-ID"]), **verdict(sender),
    }
    for name in (*headers, "Return-Path", "Received"):
        del message[name]
    for name, value in headers.items():
        message[name] = value
    return message.as_bytes(policy=email.policy.SMTP)


def answer(stack: LoopbackStack, raw: bytes) -> None:
    stack.sink.clear()
    stack.mail_in(raw)
    stack.run_once()


def runtime(stack: LoopbackStack) -> Runtime:
    assert stack.daemon is not None and stack.daemon.runtime is not None
    return stack.daemon.runtime


def shown(stack: LoopbackStack, item_id: int) -> str:
    out = io.StringIO()
    assert queue_show(runtime(stack), item_id, out) == 0
    return out.getvalue()


def test_iphone_akkoord_spoed_reaches_members_marked_spoed(stack: LoopbackStack) -> None:
    request, item_id = resident_report(stack, *SUSPICIOUS)
    assert "SPOED" not in str(request["Subject"])  # the rules found it not urgent
    assert "SPOED of NIET SPOED" in text_of(request) and "CATEGORIE naam" in text_of(request)

    answer(stack, reply(request, sender=ANNA, text="Akkoord\nSpoed\n\nVerzonden vanaf mijn iPhone"))

    for member in MAASPOORT:
        alert = only(stack.sent_to(member))
        assert str(alert["Subject"]).startswith("[Maaspoort] SPOED Verdachte situatie:")
        assert "*** SPOED ***" in text_of(alert)
    assert all(stack.sent_to(member) == [] for member in EMPEL)
    confirmation = only([m for m in stack.sent_to(ANNA) if str(m["Subject"]).startswith("Verwerkt")])
    assert "Aangepast: urgentie: normaal → SPOED" in text_of(confirmation)
    text = shown(stack, item_id)
    assert "urgency:      urgent" in text and "urgency: normal -> urgent  by ward_coordinator" in text


def test_outlook_html_category_and_gmail_english_urgency(stack: LoopbackStack) -> None:
    request, doorstep = resident_report(stack, *DOORSTEP)
    assert "Oplichting" not in str(request["Subject"]), "the rules already say fraud: pick another DOORSTEP"
    answer(stack, client_reply("44-outlook-desktop-html-only-categorie-fraude.eml", request, ANNA, stack.clock.now()))
    for member in MAASPOORT:
        alert = only(stack.sent_to(member))
        assert str(alert["Subject"]).startswith("[Maaspoort] Oplichting:")
        assert "waterbedrijf" in text_of(alert) and "SPOED" not in str(alert["Subject"])
    assert "-> fraud  by ward_coordinator" in shown(stack, doorstep)

    request, smoke_alarm = resident_report(stack, *SMOKE_ALARM)
    assert "SPOED" in str(request["Subject"])  # the rules found it urgent
    answer(stack, client_reply("45-gmail-web-english-approve-not-urgent.eml", request, ANNA, stack.clock.now()))
    for member in MAASPOORT:
        alert = only(stack.sent_to(member))
        assert "SPOED" not in str(alert["Subject"]) and "*** SPOED ***" not in text_of(alert)
        assert "rookmelder" in text_of(alert)
    assert "urgency: urgent -> normal  by ward_coordinator" in shown(stack, smoke_alarm)


def test_thunderbird_correction_alone_is_noted_then_the_decision_uses_it(stack: LoopbackStack) -> None:
    request, item_id = resident_report(stack, *SMOKE_ALARM)
    answer(stack, client_reply("46-thunderbird-niet-spoed-zonder-besluit.eml", request, ANNA, stack.clock.now()))

    noted = only(stack.sent_to(ANNA))
    assert "Genoteerd, nog niet besloten" in str(noted["Subject"])
    assert "urgentie: SPOED → normaal" in text_of(noted)
    assert all(stack.sent_to(member) == [] for member in MAASPOORT)  # nothing decided, nothing sent
    with runtime(stack).sessions() as session:
        item = item_by_id(session, item_id)
        assert item is not None and (item.status, item.urgency) == ("pending", "normal")

    answer(stack, reply(noted, sender=ANNA, text="AKKOORD"))  # answering the note decides
    for member in MAASPOORT:
        alert = only(stack.sent_to(member))
        assert "SPOED" not in str(alert["Subject"]) and "rookmelder" in text_of(alert)

    rt = runtime(stack)
    out = io.StringIO()
    assert report_command(rt, rt.clock.now().strftime("%Y-%m"), False, out, io.StringIO()) == 0
    assert "verbeterd door coördinatoren: urgentie 1 (urgent → normal 1)" in out.getvalue()
