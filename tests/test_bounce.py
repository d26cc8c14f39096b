"""rules.bounces: delivery failures in the shapes real servers send."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mail.message import parse_mail
from rules.bounces import Bounce, detect_bounce
from tests.mailgen import message, varied_messages

DATA = Path(__file__).parent / "data" / "mime"
NETWORK = "bin@example.org"


def bounce_of(name: str) -> Bounce | None:
    return detect_bounce(parse_mail((DATA / name).read_bytes()), NETWORK)


def crlf(text: str) -> bytes:
    return text.lstrip("\n").replace("\n", "\r\n").encode()


def test_postfix_rfc3464_report() -> None:
    bounce = bounce_of("bounce_postfix_dsn.eml")
    assert bounce is not None
    assert bounce.recipients == ["piet.jansen@ziggo.example"]
    assert bounce.permanent
    assert bounce.status == "5.1.1"
    assert bounce.diagnostic is not None and "User unknown in virtual mailbox table" in bounce.diagnostic
    assert bounce.verp_id == "7f3a9c"


def test_delayed_report_is_a_bounce_but_not_permanent() -> None:
    bounce = bounce_of("bounce_postfix_delayed.eml")
    assert bounce is not None
    assert bounce.recipients == ["fleur@kpnmail.example"]
    assert not bounce.permanent
    assert bounce.status == "4.4.1"
    assert bounce.verp_id == "88aa"


def test_exchange_ndr_without_delivery_status() -> None:
    bounce = bounce_of("bounce_exchange_ndr.eml")
    assert bounce is not None
    assert bounce.recipients == ["h.devries@gemeente.example"]
    assert bounce.permanent and bounce.status == "5.1.1"
    assert bounce.diagnostic is not None and "RecipNotFound" in bounce.diagnostic


def test_dutch_exchange_onbestelbaar() -> None:
    bounce = bounce_of("bounce_exchange_onbestelbaar.eml")
    assert bounce is not None
    assert bounce.recipients == ["ria.smit@bewoners.example"]
    assert bounce.permanent and bounce.status == "5.1.10"


def test_gmail_address_not_found() -> None:
    bounce = bounce_of("bounce_gmail.eml")
    assert bounce is not None
    assert bounce.recipients == ["sanne.visser1987@gmail.com"]
    assert bounce.permanent and bounce.status == "5.1.1"


def test_qmail_bounce_to_verp_address() -> None:
    bounce = bounce_of("bounce_qmail_verp.eml")
    assert bounce is not None
    assert bounce.recipients == ["daan@provider.example"]
    assert bounce.verp_id == "a1b2c3d4"
    assert bounce.permanent


def test_exim_with_x_failed_recipients() -> None:
    bounce = bounce_of("bounce_exim.eml")
    assert bounce is not None
    assert bounce.recipients == ["noor@exim.example"]
    assert bounce.permanent


def test_gmail_style_report_with_dutch_text() -> None:
    raw = crlf("""
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: bin+bounce-x9@example.org
Subject: Delivery Status Notification (Failure)
MIME-Version: 1.0
Content-Type: multipart/report; boundary="g"; report-type=delivery-status

--g
Content-Type: multipart/alternative; boundary="a"

--a
Content-Type: text/plain; charset="UTF-8"

** Adres niet gevonden **

Je bericht is niet bezorgd bij zoe@gmail.com omdat het adres niet is gevonden.

--a--

--g
Content-Type: message/delivery-status

Reporting-MTA: dns; googlemail.com

Final-Recipient: rfc822; zoe@gmail.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.

--g--
""")
    bounce = detect_bounce(parse_mail(raw), NETWORK)
    assert bounce == Bounce(
        recipients=["zoe@gmail.com"],
        permanent=True,
        status="5.1.1",
        diagnostic="550-5.1.1 The email account that you tried to reach does not exist.",
        verp_id="x9",
    )


def test_dutch_gmail_text_without_report() -> None:
    raw = crlf("""
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: bin@example.org
Subject: Delivery Status Notification (Failure)

Je bericht is niet bezorgd bij zoe@gmail.com omdat het adres niet is gevonden.
""")
    bounce = detect_bounce(parse_mail(raw), NETWORK)
    assert bounce is not None and bounce.recipients == ["zoe@gmail.com"]


def test_global_delivery_status() -> None:
    raw = crlf("""
From: postmaster@mx.example.net
To: bin@example.org
Subject: Undeliverable
MIME-Version: 1.0
Content-Type: multipart/report; report-type=global-delivery-status; boundary=b

--b
Content-Type: text/plain

Delivery failed.
--b
Content-Type: message/global-delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: utf-8; joost@example.net
Action: failed
Status: 5.2.2
Diagnostic-Code: smtp; 552 mailbox full
--b--
""")
    bounce = detect_bounce(parse_mail(raw), NETWORK)
    assert bounce is not None
    assert (bounce.recipients, bounce.status, bounce.permanent) == (["joost@example.net"], "5.2.2", True)


def test_failed_after_retries_with_4xx_status_is_permanent() -> None:
    # The server gave up retrying and returned the message: that recipient is not reached.
    raw = crlf("""
From: MAILER-DAEMON@example.org
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary=b

--b
Content-Type: text/plain

gave up
--b
Content-Type: message/delivery-status

Reporting-MTA: dns; example.org

Final-Recipient: rfc822; slow@example.net
Action: failed
Status: 4.4.7
--b--
""")
    bounce = detect_bounce(parse_mail(raw), NETWORK)
    assert bounce is not None and bounce.recipients == ["slow@example.net"]
    assert bounce.permanent and bounce.status == "4.4.7"


def test_success_report_is_never_a_hard_bounce() -> None:
    # A delivery-status report without a failure: a notice to drop, never a failure to count.
    raw = crlf("""
From: MAILER-DAEMON@example.org
Subject: Successful Mail Delivery Report
Content-Type: multipart/report; report-type=delivery-status; boundary=b

--b
Content-Type: text/plain

Your message was successfully delivered to the destination(s) listed below.
--b
Content-Type: message/delivery-status

Reporting-MTA: dns; example.org

Final-Recipient: rfc822; happy@example.net
Action: delivered
Status: 2.0.0
--b--
""")
    bounce = detect_bounce(parse_mail(raw), NETWORK)
    assert bounce is not None
    assert not bounce.permanent and bounce.recipients == [] and bounce.status == "2.0.0"


@pytest.mark.parametrize("raw", [
    message("Onbestelbaar pakket bij de buren", "Er staat een onbestelbaar pakket bij nummer 12.\n"),
    message("Undeliverable: tips", "Hoe voorkom ik inbraak?\n", sender="postmaster@gemeente.example"),
    message("Afwezig", "Ik ben tot maandag afwezig.\n", to="bin+bounce-abc@example.org",
            headers={"Auto-Submitted": "auto-replied"}),
    message("Re: inbraak", "Your message wasn't delivered to x@y.nl because... grapje, wel ontvangen.\n"),
])
def test_ordinary_mail_is_not_a_bounce(raw: bytes) -> None:
    assert detect_bounce(parse_mail(raw), NETWORK) is None


def test_generated_mail_is_never_a_bounce() -> None:
    for raw in varied_messages(40, seed=9):
        assert detect_bounce(parse_mail(raw), NETWORK) is None


def test_recipient_is_never_the_network_address() -> None:
    raw = crlf("""
From: MAILER-DAEMON@example.org
To: bin@example.org
Subject: Undelivered Mail Returned to Sender

This is the mail system at host example.org.

<bin@example.org>: mailbox full
""")
    bounce = detect_bounce(parse_mail(raw), NETWORK)
    assert bounce is not None and bounce.recipients == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_never_raises(raw: bytes) -> None:
    detect_bounce(parse_mail(b"Content-Type: multipart/report; boundary=b\r\n\r\n--b\r\n" + raw), NETWORK)
    detect_bounce(parse_mail(raw), NETWORK)
