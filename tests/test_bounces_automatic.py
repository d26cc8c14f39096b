"""Auto-replies that look like bounces, and human mail that talks about bounces.

A challenge-response message and an out-of-office reply are auto-replies
(``rules.automatic``), never bounces; a person forwarding a notice or writing
about an undelivered parcel wrote human mail, neither bounce nor auto-reply.
"""

from __future__ import annotations

import pytest

from mail.message import parse_mail
from rules.automatic import auto_reply_reason, challenge_reason
from rules.bounces import detect_bounce
from tests.test_bounces_formats import NETWORK, notice


def person(subject: str, body: str, *, sender: str = "Anna Bakker <anna@example.net>") -> bytes:
    return (f"From: {sender}\nTo: {NETWORK}\nSubject: {subject}\nMIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=utf-8\n\n{body.lstrip()}").replace("\n", "\r\n").encode()


CHALLENGE_REPORT = notice("""
--c
Content-Type: text/plain

Hello,

I received your message about "Inbraak". This is a one-time automated message:
you are not on my Guest List yet. Click the link below so your mail reaches my inbox.

--c
Content-Type: message/delivery-status

Reporting-MTA: dns; screen.example.net

Final-Recipient: rfc822; wim@example.com
Action: failed
Status: 4.7.0
Diagnostic-Code: X-Screening-Notice; Sender not pre-approved

--c--
""", subject="Re: Inbraak", sender="noreply@screen.example.net",
    content_type='multipart/report; report-type=delivery-status; boundary="c"')

CHALLENGES = {
    "guest list report": CHALLENGE_REPORT,
    "verification link": person("RE: Inbraak", """
Your message was received, but this account is protected by a sender check.
Please click the link below to have your address added to the recipient's allowed list.
"""),
    "waitlist": person("Your message is waiting", """
Your message to wim@example.com has been placed on my waitlist. Reply to this message to
prove you are a person and it will be delivered.
"""),
}


@pytest.mark.parametrize("name", sorted(CHALLENGES))
def test_challenge_response_is_an_auto_reply_not_a_bounce(name: str) -> None:
    mail = parse_mail(CHALLENGES[name])
    assert detect_bounce(mail, NETWORK) is None
    reason = auto_reply_reason(mail)
    assert reason is not None and reason.startswith("challenge-response")


def test_a_server_asking_to_confirm_the_sending_server_is_a_bounce() -> None:
    raw = notice("""
This is the mail system at host relay.example.net.

<wim@example.com>: host mx.example.com said: 550 Your server requires confirmation.
    Visit http://mx.example.com/whitelist?ip=192.0.2.4 to confirm this mail server.
""", subject="Undelivered Mail Returned to Sender")
    mail = parse_mail(raw)
    assert challenge_reason(mail) is None
    bounce = detect_bounce(mail, NETWORK)
    assert bounce is not None and bounce.permanent and bounce.recipients == ["wim@example.com"]


@pytest.mark.parametrize("subject", [
    "AUTO: Jan Smit is out of the office (returning 05/01/2025)",
    "Re: Inbraak (Automatic Response)",
    "[Auto-Reply] Inbraak",
    "Automatic reply: Inbraak",
    "Automatisch antwoord: Inbraak",
    "Abwesenheitsnotiz: Inbraak",
])
def test_responder_subjects_are_auto_replies(subject: str) -> None:
    mail = parse_mail(person(subject, "Ik ben er niet, tot volgende week.\n"))
    assert auto_reply_reason(mail) is not None
    assert detect_bounce(mail, NETWORK) is None


@pytest.mark.parametrize("subject", [
    "Auto: ruit ingeslagen bij de Kruisstraat",  # "auto" is Dutch for car
    "Re: out of office hours, who do I call?",
    "Automatic gate at the park is broken",
])
def test_resident_subjects_are_not_auto_replies(subject: str) -> None:
    assert auto_reply_reason(parse_mail(person(subject, "Vanochtend gezien, graag doorgeven.\n"))) is None


@pytest.mark.parametrize("body", [
    "You are not a member of this mailing list <buurt@lists.example.net>.\n",
    "Your message to buurt@lists.example.net awaits moderator approval.\n",
    "This mailbox is no longer in use. Please write to the new office address.\n",
])
def test_list_robots_and_abandoned_mailboxes_are_automatic(body: str) -> None:
    assert auto_reply_reason(parse_mail(person("Re: Inbraak", body, sender="robot@lists.example.net")))


FORWARDED_BOUNCE = person("Fwd: Undelivered Mail Returned to Sender", """
Zie hieronder, mijn buurman krijgt de berichten niet.

> From: Mail Delivery System <MAILER-DAEMON@relay.example.net>
> Subject: Undelivered Mail Returned to Sender
>
> This is the mail system at host relay.example.net.
>
> <kees@example.com>: host mx.example.com said: 550 5.1.1 User unknown
>
> Final-Recipient: rfc822; kees@example.com
> Action: failed
> Status: 5.1.1
""")

HUMAN = {
    "forwarded bounce": FORWARDED_BOUNCE,
    "reply quoting a failure": person("Re: Undeliverable: inbraak", """
Klopt, mijn mail kwam terug met "could not be delivered to kees@example.com". Ik probeer het opnieuw.
"""),
    "parcel not delivered": person("Pakket niet bezorgd", """
Mijn pakket is niet bezorgd en de bezorger zegt dat het bij nummer 12 ligt. Verdacht?
"""),
    "patch about bounces": person("[PATCH] handle returned mail", """
This patch teaches the parser about mail that could not be delivered to one or more recipients.
Signed-off-by: Anna Bakker <anna@example.net>
"""),
}


@pytest.mark.parametrize("name", sorted(HUMAN))
def test_human_mail_about_bounces_is_no_bounce_and_no_auto_reply(name: str) -> None:
    mail = parse_mail(HUMAN[name])
    assert detect_bounce(mail, NETWORK) is None
    assert auto_reply_reason(mail) is None
