"""rules.bounces: delivery-status reports and delay notices, in examples written for these tests."""

from __future__ import annotations

import pytest

from mail.message import parse_mail
from rules.bounces import Bounce, detect_bounce
from tests.test_bounces_formats import NETWORK, notice


def detect(raw: bytes) -> Bounce | None:
    return detect_bounce(parse_mail(raw), NETWORK)


def report(*blocks: str, text: str = "Delivery to one or more recipients did not succeed.",
           subject: str = "Delivery Status Notification") -> bytes:
    status = "\n".join(block.strip() + "\n" for block in blocks)
    body = f"""
--r
Content-Type: text/plain

{text}

--r
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.example.net

{status}
--r
Content-Type: text/rfc822-headers

From: bin@example.org
To: wim@example.com, ans@example.com
Subject: Inbraak

--r--
"""
    return notice(body, subject=subject,
                  content_type='multipart/report; report-type=delivery-status; boundary="r"')


def test_generic_report_lists_both_the_alias_and_where_it_led() -> None:
    bounce = detect(report("""
Original-Recipient: rfc822; kees@example.org
Final-Recipient: rfc822; kees.jansen@mailbox.example.net
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 no such mailbox
"""))
    assert bounce is not None and bounce.permanent
    assert bounce.recipients == ["kees@example.org", "kees.jansen@mailbox.example.net"]
    assert (bounce.status, bounce.diagnostic) == ("5.1.1", "550 5.1.1 no such mailbox")


def test_only_failed_recipients_count_not_the_returned_to() -> None:
    bounce = detect(report("""
Final-Recipient: rfc822; ans@example.com
Action: failed
Status: 5.2.2
""", """
Final-Recipient: rfc822; wim@example.com
Action: delivered
Status: 2.0.0
"""))
    assert bounce is not None and bounce.permanent and bounce.recipients == ["ans@example.com"]


def test_text_alias_is_added_to_a_report() -> None:
    bounce = detect(report("""
Final-Recipient: rfc822; piet@mailbox.example.net
Action: failed
Status: 5.1.1
""", text="<piet@mailbox.example.net> (expanded from <piet@example.org>): unknown user"))
    assert bounce is not None and bounce.recipients == ["piet@example.org", "piet@mailbox.example.net"]


def test_a_report_whose_every_status_is_2xx_is_never_a_bounce() -> None:
    bounce = detect(report("""
Final-Recipient: rfc822; wim@example.com
Action: deliverable
Status: 2.1.5
""", subject="Mail Delivery Status Report"))
    assert bounce is not None
    assert not bounce.permanent and bounce.recipients == [] and bounce.status == "2.1.5"


def test_failed_with_a_2xx_status_is_still_no_bounce() -> None:
    bounce = detect(report("""
Final-Recipient: rfc822; wim@example.com
Action: failed
Status: 2.0.0
"""))
    assert bounce is not None and not bounce.permanent


def test_delayed_report_is_a_delay() -> None:
    bounce = detect(report("""
Final-Recipient: rfc822; wim@example.com
Action: delayed
Status: 4.4.1
Will-Retry-Until: Fri, 7 Mar 2025 10:00:00 +0100
""", subject="Delayed Mail (still being retried)"))
    assert bounce is not None and not bounce.permanent and bounce.status == "4.4.1"


def test_pasted_report_fields_name_only_the_failed_recipient() -> None:
    # Amazon WorkMail: the fields in the text, the returned original addressed to many.
    raw = notice("""
An error occurred while trying to deliver the mail to the following recipients:
ans@example.com

Technical report:

Reporting-MTA: dsn; smtp.example.net

Action: failed
Final-Recipient: rfc822; ans@example.com
Diagnostic-Code: smtp; 550 5.1.1 <ans@example.com>... User Unknown
Status: 5.1.1

---------- Forwarded message ----------
From: bin@example.org
To: wim@example.com, ans@example.com, kees@example.com
""", subject="Delivery Status Notification (Failure)")
    bounce = detect(raw)
    assert bounce is not None and bounce.permanent and bounce.recipients == ["ans@example.com"]


@pytest.mark.parametrize("body, subject", [
    ("""
This is the mail system at host relay.example.net.

####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

Your message could not be delivered for more than 4 hours.
It will be retried until it is 5 days old.

<wim@example.com>: connect to mx.example.com[192.0.2.5]:25: Connection timed out
""", "Delayed Mail (still being retried)"),
    ("""
This message was created automatically by mail delivery software.
A message that you sent has not yet been delivered to one or more of its
recipients after more than 24 hours on the queue on relay.example.net.

The address to which the message has not yet been delivered is:

  wim@example.com
    Delay reason: 451 4.7.1 greylisted, try again later

No action is required on your part. Delivery attempts will continue for
some time, and this warning may be repeated at intervals if the message
remains undelivered. Eventually the mail delivery software will give up,
and when that happens, the message will be returned to you.
""", "Warning: message 1abcDE-0001xy-AB delayed 24 hours"),
    ("""
    A message is delayed for more than 4 hours for the following
    list of recipients:

wim@example.com: Network error on destination MXs

    Please note that this is only a temporary failure report.
""", "Delivery status notification: delayed"),
    ("""
Delivery is delayed to these recipients or groups:

wim@example.com

This message hasn't been delivered yet. Delivery will continue to be attempted.
""", "Delivery delayed: Inbraak"),
])
def test_delay_notices_are_delays(body: str, subject: str) -> None:
    bounce = detect(notice(body, subject=subject))
    assert bounce is not None and not bounce.permanent


def test_a_warning_that_gave_up_is_a_bounce() -> None:
    raw = notice("""
<wim@example.com>:
Sorry, I couldn't find any host by that name. (#4.1.2)
I'm not going to try again; this message has been in the queue too long.
""", subject="failure notice")
    bounce = detect(raw)
    assert bounce is not None and bounce.permanent and bounce.recipients == ["wim@example.com"]


def test_amazon_ses_transient_is_a_delay() -> None:
    raw = notice('{"notificationType":"Bounce","bounce":{"bounceType":"Transient",'
                 '"bouncedRecipients":[{"emailAddress":"wim@example.com"}]}}\n',
                 subject="AWS Notification Message", sender="no-reply@sns.example.com")
    bounce = detect(raw)
    assert bounce is not None and not bounce.permanent


def test_success_notice_in_words_is_never_a_hard_bounce() -> None:
    raw = notice("""
This is the mail system at host relay.example.net.

Your message was successfully delivered to the destination(s)
listed below. If the message was delivered to mailbox you will
receive no further notifications.

<wim@example.com>: delivery via mx.example.com[192.0.2.5]:25: 250 2.0.0 Ok: queued
""", subject="Successful Mail Delivery Report")
    bounce = detect(raw)
    assert bounce is not None and not bounce.permanent and bounce.recipients == []


def test_german_delay_notice_is_a_delay() -> None:
    raw = notice("""
Die Zustellung Ihrer Nachricht an wim@example.com hat sich verzögert.
Es wird weiter versucht, die Nachricht zuzustellen.
""", subject="Zustellung verzögert")
    bounce = detect(raw)
    assert bounce is not None and not bounce.permanent
