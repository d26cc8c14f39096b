"""Fewer, better alerts end to end: preference commands by email and a digest day."""

from __future__ import annotations

import pytest

from relay.devservers.stack import LoopbackStack, compose, reply
from relay.service.clock import FrozenClock
from tests.e2e import ANNA, MAASPOORT, POLICE, only, text_of

pytestmark = pytest.mark.dovecot

ELS, JOOST, FATIMA = MAASPOORT


def command(stack: LoopbackStack, sender: str, subject: str) -> str:
    stack.sink.clear()
    stack.mail_in(compose(sender=sender, subject=subject, body=""))
    stack.run_once()
    return text_of(only(stack.sent_to(sender)))


def police(stack: LoopbackStack, subject: str, body: str) -> None:
    """The police mail an alert and Anna approves it."""
    stack.mail_in(compose(sender=POLICE, subject=subject, body=body))
    stack.run_once()
    request = stack.approval_requests(ANNA)[-1]
    stack.sink.clear()
    stack.mail_in(reply(request, sender=ANNA, text="AKKOORD"))
    stack.run_once()


NORMAL = ("Fietsendiefstal Marathonloop", "Vorige week zijn aan de Marathonloop drie fietsen gestolen.")
URGENT = ("Vermiste man Marathonloop", "Op dit moment wordt een man (82) vermist, laatst gezien op de Marathonloop. Heeft u hem gezien? Bel 112.")


def test_urgent_only(stack: LoopbackStack) -> None:
    answer = command(stack, ELS, "ALLEEN SPOED")
    assert "spoed" in answer.lower()
    police(stack, *NORMAL)
    assert stack.sent_to(ELS) == []
    assert len(stack.sent_to(JOOST)) == 1
    police(stack, *URGENT)
    assert "Vermiste man" in str(only(stack.sent_to(ELS))["Subject"])


def test_categories_in_dutch_and_english(stack: LoopbackStack) -> None:
    command(stack, ELS, "CATEGORIEEN vermissing, inbraak")
    command(stack, JOOST, "CATEGORIES theft")
    police(stack, *NORMAL)  # theft
    assert stack.sent_to(ELS) == []
    assert len(stack.sent_to(JOOST)) == 1


def test_all_resets_and_help_shows_the_settings(stack: LoopbackStack) -> None:
    command(stack, ELS, "ALLEEN SPOED")
    help_text = command(stack, ELS, "HELP")
    assert "spoed" in help_text.lower()
    command(stack, ELS, "ALLES")
    police(stack, *NORMAL)
    assert len(stack.sent_to(ELS)) == 1


def test_a_digest_day(stack: LoopbackStack, clock: FrozenClock) -> None:
    # 09:00 UTC is 10:00 in Amsterdam; the digest goes out at 18:00 local time.
    command(stack, FATIMA, "DAGELIJKS")
    police(stack, *NORMAL)
    assert stack.sent_to(FATIMA) == []  # non-urgent: kept for the digest
    police(stack, *URGENT)
    assert len(stack.sent_to(FATIMA)) == 1  # urgent: at once

    clock.advance(hours=3)
    stack.sink.clear()
    stack.run_once()
    assert stack.sent_to(FATIMA) == []  # 13:00 local: not yet

    clock.advance(hours=5, minutes=5)  # 18:05 local
    stack.run_once()
    digest = only(stack.sent_to(FATIMA))
    assert "Fietsendiefstal" in text_of(digest)
    assert "Vermiste man" not in text_of(digest)  # already sent at once

    stack.sink.clear()
    clock.advance(hours=1)
    stack.run_once()
    assert stack.sent_to(FATIMA) == []  # one digest a day
