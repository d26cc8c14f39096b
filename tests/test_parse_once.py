"""Parse once, find duplicates through the index: what routing stored is what every later step uses."""

from __future__ import annotations

import itertools
import random
import string
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select

from relay.approvals.requests import request_context
from relay.delivery.alerts import member_scrub
from relay.devservers.smtpsink import RecordingSink
from relay.devservers.stack import verdict
from relay.jobs.retention import purge
from relay.service.clock import FrozenClock
from storage.models import DuplicateKey, ItemStatus, Message, QueueItem
from tests.flow import Flow, make_flow

NETWORK = "bin@bin-demo.nl"
_SERIAL = itertools.count()
REPORT = "Verdachte man trekt aan autodeuren op de Marathonloop, grijze hoodie, zwarte rugzak"
REPEAT = "Die man in de grijze hoodie voelt aan de autodeuren op de Marathonloop, zwarte rugzak om"


@pytest.fixture
def flow(tmp_path: Path, smtp_sink: RecordingSink, clock: FrozenClock) -> Iterator[Flow]:
    running = make_flow(tmp_path, smtp_sink, clock, {"delivery": {"resident_attachments": True}})
    yield running
    running.rt.sessions.kw["bind"].dispose()


def report(body: str, *, sender: str = "Jan de Vries <jan@example.net>", subject: str = "verdacht",
           attachment: bytes | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = NETWORK
    message["Subject"] = subject
    message["Message-ID"] = f"<po{next(_SERIAL)}@example.net>"
    for name, value in verdict(sender.rpartition("<")[2].rstrip(">")).items():
        message[name] = value
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(attachment, maintype="image", subtype="jpeg", filename="deurbel.jpg")
    return message.as_bytes()


def the_item(flow: Flow, message_id: int) -> QueueItem:
    [item] = flow.items_for(message_id)
    return item


def test_later_steps_use_what_routing_stored_not_the_raw_bytes(flow: Flow) -> None:
    message_id = flow.store(report(REPORT + " Zie de foto van mijn deurbel.", attachment=b"\xff\xd8 jpeg"))
    flow.route()
    # Whatever the stored bytes say now, the request and the alert go by what routing read from them.
    stand_in = report("Iets heel anders", sender="Piet Puk <piet@example.net>", subject="anders")
    with flow.rt.sessions() as session, session.begin():
        message = session.get(Message, message_id)
        assert message is not None and message.facts is not None and message.signature
        message.raw = stand_in
    with flow.rt.sessions() as session:
        item = session.scalars(select(QueueItem).where(QueueItem.message_id == message_id)).one()
        context = request_context(flow.rt, session, item, "nl")
        assert context["original_subject"] == "verdacht"
        assert context["attachments"] == ["deurbel.jpg (image/jpeg, 7 B)"]
        assert "autodeuren" in context["text"]
        scrub = member_scrub(flow.rt.config, item, item.message, None)
        assert "Jan de Vries" not in scrub("Groet, Jan de Vries")  # the reporter's name, from the facts


def test_a_message_routed_before_facts_were_kept_is_read_from_its_bytes(flow: Flow) -> None:
    message_id = flow.store(report(REPORT, attachment=b"\xff\xd8 jpeg"))
    flow.route()
    with flow.rt.sessions() as session, session.begin():
        message = session.get(Message, message_id)
        assert message is not None
        message.facts = None  # as a row routed by an older binrelay
    with flow.rt.sessions() as session:
        item = session.scalars(select(QueueItem).where(QueueItem.message_id == message_id)).one()
        assert request_context(flow.rt, session, item, "nl")["attachments"] == ["deurbel.jpg (image/jpeg, 7 B)"]


def test_a_repeat_finds_its_report_behind_a_backlog_of_other_wards(flow: Flow) -> None:
    """The index is by category and ward: newer reports elsewhere do not push the first one out of reach."""
    first = flow.store(report(REPORT + " in Maaspoort"))
    flow.route()
    rng = random.Random(16)
    for n in range(60):  # newer suspicious-person reports in Empel, each about something else
        details = " ".join("".join(rng.choices(string.ascii_lowercase, k=7)) for _ in range(8))
        flow.store(report(f"Verdachte man gezien bij {details} in Empel", sender=f"Buur {n} <buur{n}@example.net>"))
    flow.route()
    with flow.rt.sessions() as session:
        heads = session.scalar(select(func.count()).select_from(QueueItem).where(
            QueueItem.status == ItemStatus.PENDING, QueueItem.category == "suspicious"))
        assert heads == 61  # none of them merged: 60 items newer than the first
    repeat = flow.store(report(REPEAT + " in Maaspoort", sender="Els <els@example.net>"))
    flow.route()
    head, joined = the_item(flow, first), the_item(flow, repeat)
    assert joined.status == ItemStatus.MERGED and joined.merged_into_id == head.id


def test_the_index_forgets_what_no_merge_window_reaches(flow: Flow, clock: FrozenClock) -> None:
    flow.store(report(REPORT + " in Maaspoort"))
    flow.route()
    with flow.rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(DuplicateKey)) == 1
    clock.advance(hours=5)
    purge(flow.rt, clock.now())
    with flow.rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(DuplicateKey)) == 0
    repeat = flow.store(report(REPEAT + " in Maaspoort", sender="Els <els@example.net>"))
    flow.route()
    assert the_item(flow, repeat).status == ItemStatus.PENDING  # too late to merge: its own item
