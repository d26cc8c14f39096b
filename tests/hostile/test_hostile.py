"""Every hostile case: stored whole, handled as README.md says, nothing unsafe goes out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.devservers.smtpsink import RecordingSink
from relay.service.clock import FrozenClock
from tests.flow import COORDINATORS, Flow, make_flow, parse
from tests.hostile.cases import CASES, MEMBER, Case

# Header names binrelay itself writes; anything else in an outgoing message leaked in.
OWN_HEADERS = {
    "from", "to", "cc", "subject", "date", "message-id", "reply-to", "in-reply-to", "references",
    "auto-submitted", "x-loop", "x-mailer", "mime-version", "content-type",
    "content-transfer-encoding", "content-disposition", "list-id", "list-unsubscribe",
    "list-unsubscribe-post", "list-post", "list-help", "precedence", "x-auto-response-suppress",
}


@pytest.fixture
def flow(tmp_path: Path, smtp_sink: RecordingSink, clock: FrozenClock) -> Iterator[Flow]:
    running = make_flow(tmp_path, smtp_sink, clock, {
        "wards": [{"slug": "centrum", "name": "Centrum", "coordinators": ["anna@coordinatoren.nl"]}],
    })
    running.add_member(MEMBER, "centrum")
    yield running


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case(flow: Flow, case: Case) -> None:
    raw = case.build()
    message_id = flow.store(raw)
    stats = flow.route()
    flow.deliver()

    stored = flow.message(message_id)
    assert stored.raw == raw, "the message must be stored whole"
    assert stats.failed == 0, stored.error
    items = flow.items_for(message_id)
    if case.expect == "dropped":
        assert stored.status == "dropped"
        assert items == []
        assert flow.sent() == []
    else:
        assert stored.status == "held"
        assert len(items) == 1, "held for a coordinator, once"
    # Only coordinators hear about it (an approval request) and the member who sent it
    # (a receipt); nobody else gets anything.
    assert flow.recipients() <= COORDINATORS | {MEMBER}
    for _rcpts, out in flow.sent():
        assert_safe_headers(out)


def assert_safe_headers(raw: bytes) -> None:
    head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
    names = {line.split(":", 1)[0].strip().lower() for line in head.split("\r\n") if line and not line[0].isspace()}
    leaked = {name for name in names - OWN_HEADERS if not name.startswith("x-bin-")}
    assert not leaked, f"unexpected headers in an outgoing message: {leaked}"
    assert "\r" not in head.replace("\r\n", ""), "a bare CR in the header block"
    assert not re.search(r"(?im)^bcc:", head)
    parsed = parse(raw)
    assert len(parsed.get_all("To") or []) == 1


def test_not_understood_messages_are_flagged_for_the_coordinator(flow: Flow) -> None:
    garbage = next(c for c in CASES if c.name == "header_only_garbage").build()
    message_id = flow.store(garbage)
    flow.route()
    flow.deliver()
    (item,) = flow.items_for(message_id)
    assert item.status == "pending"
    requests = [parse(raw) for _r, raw in flow.sent()]
    assert requests, "the coordinator is asked"
    body = requests[0].get_body(preferencelist=("plain",))
    assert body is not None and "defect: MIME structure" in body.get_content()


def test_5000_recipients_never_receive_anything(flow: Flow) -> None:
    raw = next(c for c in CASES if c.name == "five_thousand_recipients").build()
    flow.store(raw)
    flow.route()
    flow.deliver()
    assert not any(r.startswith("r") and r.endswith("@example.com") for r in flow.recipients())
