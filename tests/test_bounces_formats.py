"""rules.bounces: one short example per notice format, written for these tests.

Each example keeps only what makes its format: the layout and the phrases a
server of that family writes. Addresses and wording around them are invented.
"""

from __future__ import annotations

import pytest

from mail.message import parse_mail
from rules import bounces
from rules.bounces import Bounce, detect_bounce

NETWORK = "bin@example.org"
RETURN_PATH = "bin+bounce-c0ffee@example.org"


def notice(body: str, *, subject: str = "Undelivered Mail", sender: str = "MAILER-DAEMON@mx.example.net",
           headers: str = "", content_type: str = "text/plain; charset=us-ascii") -> bytes:
    head = (f"From: {sender}\nTo: {RETURN_PATH}\nSubject: {subject}\nMIME-Version: 1.0\n"
            f"{headers}Content-Type: {content_type}\n\n")
    return (head + body.lstrip("\n")).replace("\n", "\r\n").encode()


def detect(raw: bytes) -> Bounce | None:
    return detect_bounce(parse_mail(raw), NETWORK)


def failed(raw: bytes) -> list[str]:
    bounce = detect(raw)
    assert bounce is not None, "not recognised as a bounce"
    assert bounce.permanent, "recognised, but as a delay"
    return bounce.recipients


RETURNED = """
From: BIN <bin@example.org>
To: wim@example.com
Subject: Inbraak Kruisstraat
"""

FORMATS = {
    "dragonfly": (notice("""
This is the DragonFly Mail Agent v0.13 at relay.example.net.

There was an error delivering your mail to <ans@example.com>.

mx.example.com [192.0.2.1] did not like our RCPT TO:
550 5.1.1 <ans@example.com>: Recipient address rejected: User unknown

Message headers follow.
""" + RETURNED, subject="Mail delivery failed", sender="MAILER-DAEMON <>"), ["ans@example.com"]),
    "old exchange": (notice("""
Your message

  To:      wim@example.com
  Subject: Inbraak Kruisstraat
  Sent:    Mon, 3 Mar 2025 10:00:00 +0100

did not reach the following recipient(s):

kees@example.com on Mon, 3 Mar 2025 10:00:05 +0100
    The recipient name is not recognized
    MSEXCH:IMS:EXAMPLE:SITE:SERVER1 0 (000C05A6) Unknown Recipient
""", subject="Undeliverable: Inbraak Kruisstraat", sender="System Administrator <postmaster@example.com>"),
        ["kees@example.com"]),
    "old exchange x.400": (notice("""
did not reach the following recipient(s):

c=NL;a= ;p=EXAMPLE;o=Kantoor;dda:SMTP=LIES@EXAMPLE.COM; on Mon, 3 Mar 2025
    The recipient name is not recognized
""", subject="Undeliverable: x", sender="postmaster@example.com"), ["lies@example.com"]),
    "opensmtpd": (notice("""
    Hi!

    This is the MAILER-DAEMON, please DO NOT REPLY to this email.

    An error has occurred while attempting to deliver a message for
    the following list of recipients:

bep@example.com: 550 5.2.2 Mailbox full
dirk@example.com: 550 5.1.1 No such user

    Below is a copy of the original message:
""" + RETURNED, subject="Delivery status notification: error"), ["bep@example.com", "dirk@example.com"]),
    "imail": (notice("""
Unknown user: joke@example.com


Original message follows.
""" + RETURNED, subject="Undeliverable Mail", sender="Postmaster <postmaster@example.com>"),
        ["joke@example.com"]),
    "mmdf": (notice("""
After 5 days (120 hours), your message could not be fully delivered.

It failed to be received by the following address(es):

    gert@example.com (host: mail.example.com) (queue: smtp)

Problems usually are due to service interruptions at the receiving machine.
Less often, they are caused by the communication system.
""", subject="Failed mail"), ["gert@example.com"]),
    "bare smtp reply line": (notice("""
A problem occurred while delivering your message.

roel@example.com: 550 mailbox unavailable
""", subject="failure notice"), ["roel@example.com"]),
    "qmail": (notice("""
Hi. This is the qmail-send program at example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<tom@example.com>:
192.0.2.7 does not like recipient.
Remote host said: 550 5.1.1 unknown user

<ria@example.com>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.
""" + RETURNED, subject="failure notice"), ["tom@example.com", "ria@example.com"]),
    "qmail gave up on a 4xx": (notice("""
Hi. This is the qmail-send program at example.net.

<hans@example.com>:
Connected to 192.0.2.9 but sender was rejected.
Remote host said: 451 4.3.0 try again later
I'm not going to try again; this message has been in the queue too long.
""", subject="failure notice"), ["hans@example.com"]),
    "exim with alias": (notice("""
This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  mien@mailbox.example.com
    (ultimately generated from mien@example.com)
    SMTP error from remote mail server after RCPT TO:<mien@mailbox.example.com>:
    550 5.1.1 unknown user

------ This is a copy of the message, including all the headers. ------
""" + RETURNED, subject="Mail delivery failed: returning message to sender",
        headers="X-Failed-Recipients: mien@mailbox.example.com\n"),
        ["mien@example.com", "mien@mailbox.example.com"]),
    "exim without header": (notice("""
This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. The following address(es) failed:

  ko@example.com
    mailbox is full: retry timeout exceeded
""", subject="Mail delivery failed"), ["ko@example.com"]),
    "sendmail v5": (notice("""
   ----- Transcript of session follows -----
554 <pim@example.com>... Service unavailable

   ----- Unsent message follows -----
""" + RETURNED, subject="Returned mail: Service unavailable"), ["pim@example.com"]),
    "sendmail": (notice("""
The original message was received at Mon, 3 Mar 2025 10:00:00 +0100
from relay.example.org [192.0.2.3]

   ----- The following addresses had permanent fatal errors -----
<lot@example.com>
    (reason: 550 5.1.1 User unknown)
    (expanded from: <lotte@example.org>)

   ----- Transcript of session follows -----
... while talking to mx.example.com.:
>>> RCPT To:<lot@example.com>
<<< 550 5.1.1 User unknown
""", subject="Returned mail: see transcript for details"), ["lotte@example.org", "lot@example.com"]),
    "domino": (notice("""
Your message

  Subject: Inbraak Kruisstraat

was not delivered to:

  bas@example.com

because:

  User bas (bas@example.com) not listed in Domino Directory
""", subject="DELIVERY FAILURE: User bas (bas@example.com) not listed in Domino Directory",
        sender="postmaster@example.com"), ["bas@example.com"]),
    "notes failure reasons": (notice("""
------- Failure Reasons  --------

User not listed in public Name & Address Book
ida@example.com


------- Returned Message --------
""" + RETURNED, subject="Undeliverable message", sender="postmaster@example.com"), ["ida@example.com"]),
    "lsmtp error-for": (notice("""
An error was detected while processing the enclosed message.  A list of
the affected recipient follows.

--> Error description:
Error-for:  jet@example.com
Error-Code: 5
Error-Text: No such local user.

Error-End:  One error reported.
""", subject="Undelivered mail", sender="LSMTP for Windows NT <postmaster@example.net>"),
        ["jet@example.com"]),
    "pmdf recipient address": (notice("""
Your message cannot be delivered to the following recipients:

  Recipient address: tim@example.com
  Reason: Remote SMTP server has rejected address
  Diagnostic code: smtp;550 5.1.1 no such user
  Recipient address: sam@example.com
  Reason: Remote SMTP server has rejected address
""", subject="Delivery Notification: Delivery has failed", sender="PMDF e-Mail Interconnect <postmaster@example.net>"),
        ["tim@example.com", "sam@example.com"]),
    "yahoo": (notice("""
Message from example.com.
Unable to deliver message to the following address(es).

<fien@example.com>:
Sorry your message to fien@example.com cannot be delivered. This account has been disabled or discontinued.
""", subject="Delivery failure"), ["fien@example.com"]),
    "office365 mailto": (notice("""
Delivery has failed to these recipients or groups:

gijs@example.com<mailto:gijs@example.com>
The email address you entered couldn't be found.

Diagnostic information for administrators:

Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found'
""", subject="Undeliverable: Inbraak Kruisstraat", sender="postmaster@example.onmicrosoft.com"),
        ["gijs@example.com"]),
    "kddi": (notice("""
Could not be delivered to: <mira@ezweb.example.jp>
As their mailbox is full.
""", subject="Mail System Error - Returned Mail", sender="postmaster@ezweb.example.jp"),
        ["mira@ezweb.example.jp"]),
    "mailfoundry": (notice("""
Unable to deliver message to: <luuk@example.com>
Delivery failed for the following reason:
Server mx.example.com[192.0.2.8] failed with: 550 No such user here
""", subject="Message delivery has failed"), ["luuk@example.com"]),
    "mimecast": (notice("""
Your message couldn't be delivered to the following recipient(s):

-- sil@example.com
The recipient address does not exist.
""", subject="Mimecast delivery failure", sender="postmaster@mimecast.example.net"), ["sil@example.com"]),
    "iis": (notice("""
Unable to deliver the message to the following recipients, because the destination
mailbox does not exist.

       noa@example.com (Originally addressed to noa.alias@example.com)
""", subject="Delivery Status Notification (Failure)", sender="postmaster@example.com"),
        ["noa@example.com", "noa.alias@example.com"]),
    "surfcontrol": (notice("""
The message you sent was blocked.

Addressed To: mees@example.com
Reason: content policy
""", subject="Message Undeliverable", sender="postmaster@example.com"), ["mees@example.com"]),
    "activehunter": (notice("""
Your mail could not be delivered:

>>> teun@example.com (user unknown)
""", subject="Returned mail: User unknown"), ["teun@example.com"]),
    "ph": (notice("""
   ----- Transcript of session follows -----
Could not deliver to the address below:

---- vos@example.edu
    The name was not found in the directory.
""", subject="Returned mail: User unknown"), ["vos@example.edu"]),
    "gmail": (notice("""
** Address not found **

Your message wasn't delivered to jip@example.com because the address couldn't be found.
""", subject="Delivery Status Notification (Failure)", sender="Mail Delivery Subsystem <mailer-daemon@googlemail.com>"),
        ["jip@example.com"]),
    "amazon ses json": (notice(
        '{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":'
        '[{"emailAddress":"zoe@example.com","action":"failed","status":"5.1.1"}]},'
        '"mail":{"destination":["zoe@example.com"]}}\n',
        subject="AWS Notification Message", sender="no-reply@sns.example.com"), ["zoe@example.com"]),
    "the subject names it": (notice("""
This message could not be delivered.
""", subject="Undeliverable: femke@example.com", sender="Postmaster <>"), ["femke@example.com"]),
    "screen names without a domain": (notice("""
Your mail to the following recipients could not be delivered because they are not accepting mail:
\tbuurman42
""", subject="Mail Delivery Problem", sender="Mail Delivery Subsystem <MAILER-DAEMON@aol.example.com>"),
        ["buurman42@aol.example.com"]),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_each_format_names_the_failed_recipients(name: str) -> None:
    raw, expected = FORMATS[name]
    assert failed(raw) == expected


def test_returned_to_with_one_address_is_the_recipient() -> None:
    raw = notice("""
This message could not be delivered; the receiving system gave no reason.

------ Original message follows ------
From: bin@example.org
To: wim@example.com
Subject: Inbraak
""", subject="Mail delivery failed")
    assert failed(raw) == ["wim@example.com"]


def test_returned_to_with_several_addresses_names_nobody() -> None:
    raw = notice("""
This message could not be delivered; the receiving system gave no reason.

------ Original message follows ------
From: bin@example.org
To: wim@example.com, ans@example.com
Subject: Inbraak
""", subject="Mail delivery failed")
    assert failed(raw) == []


def test_the_sender_named_by_exim_is_not_a_recipient() -> None:
    raw = notice("""
A message sent by

  <someone.else@example.net>

could not be delivered to one or more of its recipients. The following
address(es) failed:

  aad@example.com
    unknown user
""", subject="Mail delivery failed")
    assert failed(raw) == ["aad@example.com"]




# LLNL's Sendmail: "reason, address, rest" on one line; our forms see a failure but no recipient.
COMMA_LISTED = "Your message could not be delivered:\n\n  Unknown local part, wim@example.com, on this host.\n"


def test_mailman_detectors_name_the_recipient_our_forms_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = notice(COMMA_LISTED, subject="Returned mail")
    assert failed(raw) == ["wim@example.com"]
    monkeypatch.setattr(bounces, "all_failures", lambda message: (frozenset(), frozenset()))
    bounce = detect(raw)
    assert bounce is not None and bounce.recipients == []  # without them: a failure for nobody


def test_a_person_is_never_read_by_mailman_detectors(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[object] = []

    def all_failures(message: object) -> tuple[frozenset[bytes], frozenset[bytes]]:
        asked.append(message)
        return frozenset(), frozenset({b"wim@example.com"})

    monkeypatch.setattr(bounces, "all_failures", all_failures)
    assert detect(notice(COMMA_LISTED, subject="Re: Inbraak Kruisstraat", sender="Wim <wim.b@example.com>")) is None
    assert asked == []


def test_an_odd_message_that_breaks_mailman_detectors_is_no_bounce(monkeypatch: pytest.MonkeyPatch) -> None:
    def all_failures(message: object) -> tuple[frozenset[bytes], frozenset[bytes]]:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")

    monkeypatch.setattr(bounces, "all_failures", all_failures)
    bounce = detect(notice(COMMA_LISTED, subject="Returned mail"))
    assert bounce is not None and bounce.recipients == []
