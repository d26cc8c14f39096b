"""Member commands through the whole in-process flow: store raw mail, classify with the real rules,
route, and deliver to an SMTP sink on loopback; the answers are read as the member's mail client would."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from relay.devservers.smtpsink import RecordingSink
from relay.devservers.stack import verdict
from relay.service.clock import FrozenClock
from storage.models import Member, Message
from tests import mailgen
from tests.flow import Flow, make_flow, parse

NETWORK = "bin@bin-demo.nl"
RESIDENT = "ria@example.net"
_SERIAL = itertools.count()


@pytest.fixture
def flow(tmp_path: Path, smtp_sink: RecordingSink, clock: FrozenClock) -> Iterator[Flow]:
    running = make_flow(tmp_path, smtp_sink, clock)
    yield running
    running.rt.sessions.kw["bind"].dispose()


def send(flow: Flow, subject: str, body: str = "", *, sender: str = RESIDENT, to: str = NETWORK) -> str:
    """Mail the network address (verified by our receiving server), route and deliver; returns the status."""
    raw = mailgen.message(subject, body, sender=sender, to=to, message_id=f"m{next(_SERIAL)}@example.net",
                          headers=verdict(sender))
    message_id = flow.store(raw)
    flow.route()
    flow.deliver()
    return flow.message(message_id).status


def answers_to(flow: Flow, address: str) -> list[tuple[str, str, str | None]]:
    """(Subject, body, Reply-To) of what the sink received for ``address``."""
    found = []
    for recipients, raw in flow.sent():
        if address in [r.lower() for r in recipients]:
            parsed = parse(raw)
            part = parsed.get_body(("plain",))
            assert part is not None
            found.append((str(parsed["Subject"]), str(part.get_content()), parsed["Reply-To"]))
    return found


def member(flow: Flow, address: str) -> Member | None:
    with flow.rt.sessions() as session:
        row = session.scalars(select(Member).where(Member.email == address)).first()
        if row is not None:
            session.expunge(row)
        return row


def test_subscribe_confirm_and_leave_by_email(flow: Flow) -> None:
    assert send(flow, "AANMELDEN 5221 AB") == "processed"
    [(subject, body, reply_to)] = answers_to(flow, RESIDENT)
    token = re.search(r"\[BIN-c-([a-z2-7]{16})\]", subject)
    assert token is not None and reply_to == f"bin+c-{token.group(1)}@bin-demo.nl"
    assert "Maaspoort" in body and member(flow, RESIDENT) is None

    # The resident's phone answers with "Re:" and the original quoted below.
    assert send(flow, f"Re: {subject}", "Ja graag\n\nVerzonden vanaf mijn iPhone\n\n> " + body[:40],
                to=reply_to) == "processed"
    joined = member(flow, RESIDENT)
    assert joined is not None and (joined.ward, joined.status) == ("maaspoort", "active")
    assert answers_to(flow, RESIDENT)[-1][0].startswith("Welkom bij")

    assert send(flow, "ALLEEN SPOED") == "processed"
    joined = member(flow, RESIDENT)
    assert joined is not None and joined.preferences["urgent_only"] is True
    assert answers_to(flow, RESIDENT)[-1][0] == "Je instellingen zijn gewijzigd"

    assert send(flow, "help") == "processed"
    assert "wijk Maaspoort" in answers_to(flow, RESIDENT)[-1][1]

    assert send(flow, "Afmelden") == "processed"
    gone = member(flow, RESIDENT)
    assert gone is not None and gone.status == "left"
    assert answers_to(flow, RESIDENT)[-1][0].startswith("Afgemeld bij")


def test_english_subscribe_and_list_unsubscribe(flow: Flow) -> None:
    send(flow, "SUBSCRIBE Empel")
    [(subject, body, _reply_to)] = answers_to(flow, RESIDENT)
    assert "Confirm your subscription" in subject and "Empel" in body
    send(flow, f"RE: {subject}", "yes", to=NETWORK)  # the marker in the Subject is enough
    joined = member(flow, RESIDENT)
    assert joined is not None and joined.language == "en" and joined.ward == "empel"
    send(flow, "unsubscribe", sender="ria.other@example.net", to=f"bin+u-{joined.unsubscribe_token}@bin-demo.nl")
    gone = member(flow, RESIDENT)
    assert gone is not None and gone.status == "left"
    assert answers_to(flow, RESIDENT)[-1][0].startswith("Unsubscribed from")
    assert answers_to(flow, "ria.other@example.net") == []


def test_unknown_ward_is_answered_with_the_list(flow: Flow) -> None:
    send(flow, "Aanmelden Atlantis")
    [(subject, body, _)] = answers_to(flow, RESIDENT)
    assert subject == "Welke wijk bedoel je?" and "Maaspoort" in body and "Empel" in body
    with flow.rt.sessions() as session:
        assert [m.status for m in session.scalars(select(Message))] == ["processed"]


def test_confirmation_answered_from_outlook_in_html(flow: Flow) -> None:
    send(flow, "Aanmelden", "aanmelden Empel\n\nMet vriendelijke groet,\nRia")
    [(subject, _body, _reply_to)] = answers_to(flow, RESIDENT)
    raw = mailgen.message(f"AW: {subject}", "Ja, graag.\n\nVan: BIN\nVerzonden: maandag", html=True,
                          sender=f"Ria <{RESIDENT.upper()}>", message_id=f"m{next(_SERIAL)}@example.net")
    flow.store(raw)
    flow.route()
    flow.deliver()
    joined = member(flow, RESIDENT)
    assert joined is not None and joined.ward == "empel" and joined.status == "active"
    assert answers_to(flow, RESIDENT)[-1][0].startswith("Welkom bij")
