"""One odd address breaks nothing for anyone else: internationalised senders and members among normal mail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from relay.devservers.dovecot import PrivateDovecot
from relay.devservers.smtpsink import RecordingSink
from relay.devservers.stack import LoopbackStack, compose, reply
from relay.service.clock import FrozenClock
from storage.models import Delivery, Member
from tests.e2e import ANNA, MAASPOORT, make_stack

pytestmark = pytest.mark.dovecot

JURGEN = "jürgen@exämple.de"  # an internationalised address (RFC 6531)


@pytest.fixture(params=[True, False], ids=["server with SMTPUTF8", "server without SMTPUTF8"])
def odd_stack(request: pytest.FixtureRequest, tmp_path: Path, dovecot_server: PrivateDovecot,
              clock: FrozenClock) -> Iterator[tuple[LoopbackStack, bool]]:
    stack = make_stack(tmp_path, dovecot_server, clock, sink=RecordingSink(smtputf8=request.param))
    stack.add_members("maaspoort", [JURGEN])
    yield stack, request.param
    stack.stop()


def test_an_internationalised_address_fails_alone_or_is_delivered(odd_stack: tuple[LoopbackStack, bool]) -> None:
    stack, smtputf8 = odd_stack
    stack.mail_in(compose(sender=JURGEN, subject="HELP", body=""))
    stack.mail_in(compose(sender="Politie <wijkagent@politie.nl>", subject="Inbraak Marathonloop",
                          body="Vannacht ingebroken aan de Marathonloop."))
    stack.run_once()
    stack.mail_in(reply(stack.approval_requests(ANNA)[-1], sender=ANNA, text="AKKOORD"))
    stack.run_once()
    stack.run_once()  # a second pass: nothing is retried that failed for good
    for member in MAASPOORT:
        assert [m for m in stack.sent_to(member) if str(m["Subject"]).startswith("[Maaspoort]")], member
    assert stack.daemon is not None and stack.daemon.runtime is not None
    with stack.daemon.runtime.sessions() as session:
        scores = {m.email: m.bounce_score for m in session.scalars(select(Member))}
        to_jurgen = list(session.scalars(select(Delivery).where(Delivery.recipient == JURGEN)))
        others = list(session.scalars(select(Delivery).where(Delivery.recipient != JURGEN)))
    assert set(scores.values()) == {0}  # nobody collects a bounce point
    assert all(row.status == "sent" for row in others)  # every other delivery succeeded
    if smtputf8:
        assert all(row.status == "sent" for row in to_jurgen) and stack.sent_to(JURGEN)
    else:
        assert to_jurgen and all(row.status == "failed" and row.attempts == 1 for row in to_jurgen)
        assert all("SMTPUTF8" in (row.last_error or "") for row in to_jurgen)
