"""Follow-ups end to end: AFGEROND closes an appeal, threaded to each member's own copy."""

from __future__ import annotations

import pytest

from relay.devservers.stack import LoopbackStack, compose, reply
from tests.e2e import ANNA, EMPEL, MAASPOORT, POLICE, only, text_of

pytestmark = pytest.mark.dovecot

APPEAL = ("Vermiste man (82) Marathonloop",
          "Op dit moment wordt een man van 82 vermist, laatst gezien op de Marathonloop. Bel 112.")


def sent_appeal(stack: LoopbackStack) -> None:
    stack.add_members("maaspoort", [ANNA])  # the coordinator receives the alert too
    stack.mail_in(compose(sender=POLICE, subject=APPEAL[0], body=APPEAL[1]))
    stack.run_once()
    request = stack.approval_requests(ANNA)[-1]
    stack.mail_in(reply(request, sender=ANNA, text="AKKOORD"))
    stack.run_once()


def test_afgerond_reaches_everyone_who_got_the_alert_threaded(stack: LoopbackStack) -> None:
    sent_appeal(stack)
    copies = {member: only([m for m in stack.sent_to(member) if str(m["Subject"]).startswith("[Maaspoort]")])
              for member in [*MAASPOORT, ANNA]}
    coordinator_copy = only(stack.coordinator_copies(ANNA))
    stack.sink.clear()

    stack.mail_in(reply(coordinator_copy, sender=ANNA, text="AFGEROND De man is gevonden. Dank voor het uitkijken!"))
    stack.run_once()

    for member in MAASPOORT:
        follow_up = only(stack.sent_to(member))
        assert "De man is gevonden" in text_of(follow_up)
        assert "Vermiste man" in str(follow_up["Subject"])
        own_copy = str(copies[member]["Message-ID"])
        assert str(follow_up["In-Reply-To"]) == own_copy
        assert own_copy in str(follow_up["References"])
        assert "Op dit moment" not in text_of(follow_up)  # the quoted appeal is not repeated
    for member in EMPEL:
        assert stack.sent_to(member) == []  # never received the appeal


def test_a_member_cannot_close_an_alert(stack: LoopbackStack) -> None:
    sent_appeal(stack)
    copy = only([m for m in stack.sent_to(MAASPOORT[1]) if str(m["Subject"]).startswith("[Maaspoort]")])
    stack.sink.clear()
    stack.mail_in(reply(copy, sender=MAASPOORT[1], text="AFGEROND hij is thuis"))
    stack.run_once()
    # Only the coordinators hear of it (a reply to the alert, for their decision).
    assert stack.sent_to(MAASPOORT[0]) == []
    assert stack.sent_to(MAASPOORT[2]) == []
    assert stack.approval_requests(ANNA)


def test_the_police_close_their_appeal_through_the_coordinator(stack: LoopbackStack) -> None:
    original = compose(sender=POLICE, subject=APPEAL[0], body=APPEAL[1])
    stack.mail_in(original)
    stack.run_once()
    stack.mail_in(reply(stack.approval_requests(ANNA)[-1], sender=ANNA, text="AKKOORD"))
    stack.run_once()
    copy = only(stack.sent_to(MAASPOORT[0]))
    stack.sink.clear()

    from relay.devservers.stack import parse

    closing = reply(parse(original), sender=POLICE, text="AFGEROND De vermiste man is gevonden, bedankt!")
    stack.mail_in(closing)
    stack.run_once()
    assert all(stack.sent_to(member) == [] for member in MAASPOORT)  # nothing before the coordinator decides
    request = only(stack.approval_requests(ANNA))
    assert "De vermiste man is gevonden" in text_of(request)

    stack.sink.clear()
    stack.mail_in(reply(request, sender=ANNA, text="AKKOORD"))
    stack.run_once()
    update = only(stack.sent_to(MAASPOORT[0]))
    assert "De vermiste man is gevonden" in text_of(update)
    assert str(update["In-Reply-To"]) == str(copy["Message-ID"])
