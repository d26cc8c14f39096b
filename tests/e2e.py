"""End-to-end fixture: a whole binrelay on loopback per test, sharing one Dovecot."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from relay.devservers.dovecot import PrivateDovecot
from relay.devservers.smtpsink import RecordingSink
from relay.devservers.stack import LoopbackStack
from relay.service.clock import FrozenClock

_numbers = itertools.count(1)

MAASPOORT = ["els@bewoners.nl", "joost@bewoners.nl", "fatima@bewoners.nl"]
EMPEL = ["piet@bewoners.nl", "ria@bewoners.nl"]
ANNA = "anna@coordinatoren.nl"  # coordinator of Maaspoort
BERT = "bert@coordinatoren.nl"  # coordinator of Empel
KEES = "kees@coordinatoren.nl"  # network-wide coordinator
POLICE = "Politie Oost-Brabant <wijkagent.maaspoort@politie.nl>"


def make_stack(
    tmp_path: Path, dovecot: PrivateDovecot, clock: FrozenClock, config: dict[str, Any] | None = None,
    sink: RecordingSink | None = None,
) -> LoopbackStack:
    user = f"bin-{next(_numbers)}@bin-demo.nl"
    stack = LoopbackStack(tmp_path / "stack", clock=clock, dovecot=dovecot, config=config, mailbox_user=user,
                          sink=sink)
    stack.start()
    stack.add_members("maaspoort", MAASPOORT)
    stack.add_members("empel", EMPEL)
    return stack


@pytest.fixture
def stack(tmp_path: Path, dovecot_server: PrivateDovecot, clock: FrozenClock) -> Iterator[LoopbackStack]:
    running = make_stack(tmp_path, dovecot_server, clock)
    yield running
    running.stop()


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def only(messages: list[EmailMessage]) -> EmailMessage:
    assert len(messages) == 1, [str(m["Subject"]) for m in messages]
    return messages[0]
