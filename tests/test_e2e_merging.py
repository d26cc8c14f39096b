"""Merged duplicates end to end: five reports of one incident, one decision, one alert."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from relay.devservers.stack import LoopbackStack, compose, reply
from tests.e2e import ANNA, MAASPOORT, only, text_of

pytestmark = pytest.mark.dovecot

REPORTERS = ["r1@bewoners.nl", "r2@bewoners.nl", "r3@bewoners.nl", "r4@bewoners.nl", "r5@bewoners.nl"]
# Five neighbours about one person trying car doors, each in their own words.
REPORTS = [
    ("verdachte man", "Verdachte man trekt aan autodeuren op de Marathonloop, grijze hoodie"),
    ("vreemde vent", "Er loopt een vreemde vent aan de portieren van auto's te voelen op de marathonloop"),
    ("let op", "Let op: iemand probeert autodeuren te openen Marathonloop hoek Olympiaplein"),
    ("man bij auto's", "verdachte man in grijze hoodie voelt aan autodeuren of ze open zijn, marathonloop"),
    ("verdacht", "Zojuist verdachte man gezien die aan de portieren van geparkeerde auto's trekt (Marathonloop)"),
]
LATE = ("weer die man", "Die verdachte man met de grijze hoodie trekt nu weer aan autodeuren op de Marathonloop")


def requests(stack: LoopbackStack) -> list[EmailMessage]:
    return stack.approval_requests(ANNA)


def test_five_similar_reports_make_one_alert_and_a_late_one_an_update(stack: LoopbackStack) -> None:
    stack.add_members("maaspoort", REPORTERS)
    for sender, (subject, body) in zip(REPORTERS, REPORTS, strict=True):
        stack.mail_in(compose(sender=sender, subject=subject, body=body))
        stack.run_once()

    asked = requests(stack)
    # The group's request is refreshed as it grows to 2, 3 and 5 reports (not at 4: see refreshes_request).
    assert len(asked) == 4
    latest = text_of(asked[-1])
    for _subject, body in REPORTS[1:]:
        assert body in latest  # the last request shows every report of the group

    stack.sink.clear()
    stack.mail_in(reply(asked[2], sender=ANNA, text="AKKOORD"))  # any request of the group decides it
    stack.run_once()
    for member in [*MAASPOORT, *REPORTERS]:
        alerts = [m for m in stack.sent_to(member) if str(m["Subject"]).startswith("[Maaspoort]")]
        assert len(alerts) == 1, member  # one alert, not five

    copy = only([m for m in stack.sent_to(MAASPOORT[1]) if str(m["Subject"]).startswith("[Maaspoort]")])
    stack.sink.clear()
    stack.mail_in(compose(sender=MAASPOORT[2], subject=LATE[0], body=LATE[1]))
    stack.run_once()
    update_request = only(requests(stack))
    assert "al is verstuurd" in text_of(update_request)

    stack.sink.clear()
    stack.mail_in(reply(update_request, sender=ANNA, text="AKKOORD"))
    stack.run_once()
    update = only([m for m in stack.sent_to(MAASPOORT[1]) if "Update" in str(m["Subject"])])
    assert "trekt nu weer aan autodeuren" in text_of(update)
    assert str(update["In-Reply-To"]) == str(copy["Message-ID"])


def test_different_incidents_stay_apart(stack: LoopbackStack) -> None:
    stack.mail_in(compose(sender=MAASPOORT[0], subject="verdachte man", body=REPORTS[0][1]))
    stack.mail_in(compose(sender=MAASPOORT[1], subject="verdacht",
                          body="Verdachte man kijkt door de ramen van woningen aan het Olympiaplein"))
    stack.run_once()
    subjects = sorted(str(m["Subject"]).rsplit(": ", 1)[-1] for m in requests(stack))
    assert subjects == ["verdacht", "verdachte man"]
