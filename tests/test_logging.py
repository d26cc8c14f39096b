"""What an operator's log shows at INFO: events with ids, never a secret, a member's address or text."""

from __future__ import annotations

import logging

import pytest

from relay.devservers.stack import LoopbackStack, compose, reply
from tests.e2e import ANNA, EMPEL, MAASPOORT, POLICE

pytestmark = pytest.mark.dovecot

SECRET_TEXT = "de sleutel ligt onder de mat bij nummer 12"


def test_info_logs_name_events_not_people_or_texts(stack: LoopbackStack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    stack.mail_in(compose(sender=f"Els <{MAASPOORT[0]}>", subject="verdacht",
                          body=f"Verdachte man bij de Marathonloop, {SECRET_TEXT}."))
    stack.mail_in(compose(sender=POLICE, subject="Woninginbraak", body="Ingebroken aan de Marathonloop."))
    stack.run_once()
    for request in stack.approval_requests(ANNA):
        stack.mail_in(reply(request, sender=ANNA, text="AKKOORD"))
    stack.run_once()
    # binrelay's own loggers (the test's SMTP sink logs recipients under "mail.log").
    log_text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("binrelay"))
    assert "routed" in log_text and "alert" in log_text  # the events are there
    password = (stack.workdir / "imap.secret").read_text()
    assert password not in log_text
    assert SECRET_TEXT not in log_text
    for member in [*MAASPOORT, *EMPEL]:
        assert member not in log_text
