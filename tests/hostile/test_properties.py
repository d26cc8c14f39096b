"""Properties over the whole pipeline: nothing raises, nothing is lost, nothing unsafe goes out.

Arbitrary bytes, arbitrary MIME trees and arbitrary header values go in
through the real ingest, classification, routing and delivery (SQLite and an
SMTP sink). Whatever happens, the message is stored whole, it ends held or
dropped (never failed, never lost), and only coordinators or its own sender
hear of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.devservers.smtpsink import RecordingSink
from relay.service.clock import FrozenClock
from tests.flow import COORDINATORS, Flow, make_flow
from tests.hostile.cases import MEMBER
from tests.hostile.test_hostile import assert_safe_headers

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CHARSETS = ["utf-8", "iso-8859-1", "windows-1252", "x-unknown", "utf-16", "ascii", "gb2312", ""]
HEADER_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]), max_size=200
)


@pytest.fixture
def flow(tmp_path: Path, smtp_sink: RecordingSink, clock: FrozenClock) -> Iterator[Flow]:
    running = make_flow(tmp_path, smtp_sink, clock, {
        "wards": [{"slug": "centrum", "name": "Centrum", "coordinators": ["anna@coordinatoren.nl"]}],
        "limits": {"sender_messages_per_hour": 100_000},
    })
    running.add_member(MEMBER, "centrum")
    yield running


def check_outcome(flow: Flow, raw: bytes) -> None:
    flow.sink.clear()
    message_id = flow.store(raw)
    stats = flow.route()
    flow.deliver()
    stored = flow.message(message_id)
    assert stored.raw == raw
    assert stats.failed == 0, stored.error
    assert stored.status in ("held", "dropped", "processed"), stored.status
    if stored.status == "held":
        assert len(flow.items_for(message_id)) == 1
    sender = (stored.from_address or "").lower()
    assert flow.recipients() <= COORDINATORS | {sender}
    for _rcpts, out in flow.sent():
        assert_safe_headers(out)


@SETTINGS
@given(raw=st.binary(max_size=4000))
def test_arbitrary_bytes(flow: Flow, raw: bytes) -> None:
    check_outcome(flow, raw)


@SETTINGS
@given(subject=HEADER_TEXT, name=HEADER_TEXT, body=st.text(max_size=500), raw_subject=st.binary(max_size=200))
def test_arbitrary_header_values(flow: Flow, subject: str, name: str, body: str, raw_subject: bytes) -> None:
    message = EmailMessage()
    message["From"] = f'"{name.replace(chr(34), "")[:60]}" <{MEMBER}>' if name.isprintable() else MEMBER
    message["To"] = "bin@bin-demo.nl"
    if subject.isprintable():
        message["Subject"] = subject
    message.set_content(body or "leeg")
    head, _, rest = message.as_bytes(policy=SMTP).partition(b"\r\n\r\n")
    raw = head + b"\r\nX-Raw-Subject: " + raw_subject.replace(b"\r\n", b" ") + b"\r\n\r\n" + rest
    check_outcome(flow, raw)


def mime_trees(depth: int = 0) -> st.SearchStrategy[bytes]:
    leaf = st.builds(
        lambda charset, cte, payload, ctype: (
            f"Content-Type: {ctype}; charset={charset}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n".encode()
            + payload + b"\r\n"
        ),
        st.sampled_from(CHARSETS),
        st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "binary", "bogus"]),
        st.binary(max_size=300),
        st.sampled_from(["text/plain", "text/html", "image/jpeg", "application/zip", "message/rfc822", "text/x-junk"]),
    )
    if depth >= 3:
        return leaf

    def multipart(children: list[bytes], subtype: str, boundary: str) -> bytes:
        body = b"".join(b"--" + boundary.encode() + b"\r\n" + child for child in children)
        return (f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()
                + body + b"--" + boundary.encode() + b"--\r\n")

    return st.one_of(
        leaf,
        st.builds(multipart, st.lists(mime_trees(depth + 1), max_size=4),
                  st.sampled_from(["mixed", "alternative", "related", "report", "signed"]),
                  st.sampled_from(["b", "b1", "=_x", "", "a" * 70])),
    )


@SETTINGS
@given(tree=mime_trees())
def test_arbitrary_mime_trees(flow: Flow, tree: bytes) -> None:
    head = f"From: Jan <{MEMBER}>\r\nTo: bin@bin-demo.nl\r\nSubject: melding\r\nMIME-Version: 1.0\r\n".encode()
    check_outcome(flow, head + tree)
