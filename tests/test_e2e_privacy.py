"""Personal data end to end: what members see of a report, two-way replies, and erasure that erases."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from sqlalchemy import select

from relay.cli.members import members_erase
from relay.devservers.stack import LoopbackStack, compose, reply
from relay.service.runtime import Runtime
from storage import privacy
from tests.e2e import ANNA, MAASPOORT, only, text_of

pytestmark = pytest.mark.dovecot

JAN = MAASPOORT[0]  # els@bewoners.nl, the reporter
NEIGHBOUR = MAASPOORT[1]


def runtime(stack: LoopbackStack) -> Runtime:
    assert stack.daemon is not None and stack.daemon.runtime is not None
    return stack.daemon.runtime


def approve_all(stack: LoopbackStack) -> None:
    for request in stack.approval_requests(ANNA):
        stack.mail_in(reply(request, sender=ANNA, text="AKKOORD"))
    stack.run_once()


def everything_in_the_database(stack: LoopbackStack) -> list[tuple[str, Any]]:
    """Every value of every text, JSON and binary column of every table."""
    found: list[tuple[str, Any]] = []
    with runtime(stack).sessions() as session:
        for name, column in privacy.columns():
            found += [(name, value) for value in session.scalars(select(column)) if value is not None]
    return found


def forms(address: str) -> list[bytes]:
    """The address as it may be stored: plain in any case, quoted-printable, base64-encoded in a text."""
    encoded = base64.b64encode(f"schrijf {address} gerust".encode())
    return [address.lower().encode(), address.upper().encode(), address.replace("@", "=40").lower().encode(),
            encoded[8:24]]


def test_a_report_with_the_reporters_name_and_others_addresses_reaches_members_scrubbed(
        stack: LoopbackStack) -> None:
    stack.mail_in(compose(
        sender=f"Els van Dijk <{JAN}>",
        subject=f"Inbraak Marathonloop - Els van Dijk ({JAN})",
        body=f"Bij ons ingebroken. Mail mij ({JAN}) of mijn buurman {NEIGHBOUR} als je iets zag.",
    ))
    stack.run_once()
    request = text_of(only(stack.approval_requests(ANNA)))
    assert "e-mailadres van een ander" in request and NEIGHBOUR in request  # the coordinator is warned
    approve_all(stack)
    for member in MAASPOORT[1:]:
        copy = only([m for m in stack.sent_to(member) if str(m["Subject"]).startswith("[Maaspoort]")])
        whole = copy.as_string().lower()
        for leak in {JAN, NEIGHBOUR, "els van dijk", "van dijk"} - {member}:
            assert leak not in whole, (member, leak)  # only their own address, in their own To
        assert "[e-mail]" in str(copy["Subject"]) and "[naam]" in str(copy["Subject"])


def test_a_two_way_reply_shows_no_member_the_others_address(stack: LoopbackStack) -> None:
    stack.mail_in(compose(sender=JAN, subject="Verdachte man Marathonloop", body="Een man kijkt in auto's."))
    stack.run_once()
    approve_all(stack)
    copy = only([m for m in stack.sent_to(NEIGHBOUR) if str(m["Subject"]).startswith("[Maaspoort]")])
    stack.sink.clear()
    stack.mail_in(reply(copy, sender=f"Joost Smit <{NEIGHBOUR}>", text="Ik zag hem ook, om 14:00. Joost"))
    stack.run_once()
    approve_all(stack)
    passed = only(stack.sent_to(JAN))
    assert NEIGHBOUR not in passed.as_string().lower() and "joost smit" not in passed.as_string().lower()
    assert str(passed["Reply-To"]) == "bin@bin-demo.nl"
    assert "Ik zag hem ook" in text_of(passed)


def test_erasure_leaves_the_address_nowhere_in_the_database(stack: LoopbackStack) -> None:
    stack.mail_in(compose(sender=f"Els van Dijk <{JAN}>", subject="Fiets gestolen Marathonloop",
                          body="Mijn fiets is weg."))
    # Another member's report names her, in a base64-encoded part.
    stack.mail_in(compose(sender=NEIGHBOUR, subject="Ook bij Els", body=f"Vraag het {JAN}, zij zag het ook. " * 3,
                          headers={"Content-Transfer-Encoding": "base64"}))
    stack.mail_in(compose(sender=JAN, subject="ALLEEN SPOED", body=""))
    stack.run_once()
    approve_all(stack)
    stored = everything_in_the_database(stack)
    assert any(JAN.encode() in (value if isinstance(value, bytes) else str(value).lower().encode())
               for _name, value in stored)  # there is something to erase

    out = io.StringIO()
    assert members_erase(runtime(stack), JAN, out, io.StringIO()) == 0
    assert "messages.raw" in out.getvalue()
    for name, value in everything_in_the_database(stack):
        data = value if isinstance(value, bytes) else str(value).encode()
        for form in forms(JAN):
            assert form not in data and form not in data.lower(), name
