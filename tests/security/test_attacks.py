"""Attacks on the alert channel, end to end: real Dovecot, the pipeline, the outbox, an SMTP sink.

Each class of attack of docs/security.md has tests here, in variants. Each
asserts that the attacker's mail changed nothing (no alert, no decision, no
score, no membership change), that no member received anything, that the log
says why, and that the honest path beside it still works.
"""

from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import func, select

from relay.delivery.verp import return_path
from relay.devservers.stack import LoopbackStack, compose, reply, verdict
from relay.service.runtime import Runtime
from storage.models import Alert, AuditEvent, Member, QueueItem
from tests.e2e import ANNA, BERT, EMPEL, KEES, MAASPOORT, POLICE, only, text_of

pytestmark = pytest.mark.dovecot

MALLORY = "mallory@example.com"
APPEAL = ("Vermiste man (82) Marathonloop",
          "Op dit moment wordt een man van 82 vermist, laatst gezien op de Marathonloop. Bel 112.")


# ---------------------------------------------------------------- helpers


def runtime(stack: LoopbackStack) -> Runtime:
    assert stack.daemon is not None and stack.daemon.runtime is not None
    return stack.daemon.runtime


def count(stack: LoopbackStack, model: type) -> int:
    with runtime(stack).sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def audit(stack: LoopbackStack, action: str) -> list[dict[str, object]]:
    with runtime(stack).sessions() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id))
        return [dict(event.detail) for event in events]


def members_received(stack: LoopbackStack) -> list[str]:
    return sorted({member for member in [*MAASPOORT, *EMPEL] if stack.sent_to(member)})


def sent_appeal(stack: LoopbackStack) -> None:
    """The police appeal, approved by Anna and sent to Maaspoort; the sink is cleared afterwards."""
    stack.mail_in(compose(sender=POLICE, subject=APPEAL[0], body=APPEAL[1]))
    stack.run_once()
    stack.mail_in(reply(stack.approval_requests(ANNA)[-1], sender=ANNA, text="AKKOORD"))
    stack.run_once()
    assert all(stack.sent_to(member) for member in MAASPOORT)


def with_from(raw: bytes, from_value: str, *extra: str) -> bytes:
    """The same message with its From header replaced (and extra header lines added on top)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"from:")]
    return b"\r\n".join([*(e.encode() for e in extra), f"From: {from_value}".encode(), *lines]) + b"\r\n\r\n" + body


# ---------------------------------------------------------------- a fake alert with no token


@pytest.mark.parametrize("result", ["fail", "none", "pass"], ids=["dmarc-fail", "no-verdict", "dmarc-pass"])
def test_a_members_copy_never_closes_an_alert(stack: LoopbackStack, caplog: pytest.LogCaptureFixture,
                                              result: str) -> None:
    """A member takes the Reply-To of their own copy and writes AFGEROND with a coordinator's From."""
    sent_appeal(stack)
    copy = stack.sent_to(MAASPOORT[0])[-1]
    stack.sink.clear()
    headers = verdict(ANNA, result) if result != "none" else {}
    forged = reply(copy, sender=ANNA, text="AFGEROND Alles is veilig, u kunt stoppen met zoeken.", verified=False)
    forged = with_from(forged, ANNA, *(f"{k}: {v}" for k, v in headers.items()))
    with caplog.at_level(logging.INFO):
        stack.mail_in(forged)
        stack.run_once()
    assert members_received(stack) == []
    assert count(stack, Alert) == 1  # no follow-up alert was made
    assert "refused" in caplog.text or "failed verification" in caplog.text or "held" in caplog.text


@pytest.mark.parametrize("who", [BERT, MALLORY], ids=["another coordinator", "a stranger"])
def test_a_coordinators_follow_up_right_is_hers_alone(stack: LoopbackStack, caplog: pytest.LogCaptureFixture,
                                                      who: str) -> None:
    """Anna's copy forwarded to someone else: its token is bound to Anna."""
    sent_appeal(stack)
    annas_copy = only(stack.coordinator_copies(ANNA))
    stack.sink.clear()
    with caplog.at_level(logging.WARNING):
        stack.mail_in(reply(annas_copy, sender=who, text="AFGEROND Gevonden."))
        stack.run_once()
    assert members_received(stack) == []
    assert count(stack, Alert) == 1
    assert [d["reason"] for d in audit(stack, "reply_refused")] == ["no_followup_right"]
    assert "no_followup_right" in caplog.text


def test_a_tampered_follow_up_address_is_refused(stack: LoopbackStack) -> None:
    sent_appeal(stack)
    annas_copy = only(stack.coordinator_copies(ANNA))
    stack.sink.clear()
    tampered = reply(annas_copy, sender=ANNA, text="AFGEROND Gevonden.")
    tampered = re.sub(rb"bin\+f-(\d+)-", lambda m: b"bin+f-" + str(int(m.group(1)) + 1).encode() + b"-", tampered)
    tampered = re.sub(rb"\[BIN-f-(\d+)-", lambda m: b"[BIN-f-" + str(int(m.group(1)) + 1).encode() + b"-", tampered)
    stack.mail_in(tampered)
    stack.run_once()
    assert members_received(stack) == [] and count(stack, Alert) == 1


def test_honest_afgerond_from_a_phone_closes_the_alert(stack: LoopbackStack) -> None:
    sent_appeal(stack)
    annas_copy = only(stack.coordinator_copies(ANNA))
    stack.sink.clear()
    stack.mail_in(reply(annas_copy, sender=ANNA, text="AFGEROND De man is gevonden. Dank!\n\nVerstuurd vanaf mijn iPhone"))
    stack.run_once()
    for member in MAASPOORT:
        assert "De man is gevonden" in text_of(only(stack.sent_to(member)))
    assert "iPhone" not in text_of(only(stack.sent_to(MAASPOORT[0])))


# ---------------------------------------------------------------- From-header tricks, with the right token


FROM_TRICKS = [
    f"{ANNA} <{MALLORY}>",                     # the display name is the coordinator's address
    f'"{ANNA}" <{MALLORY}>',                   # the same, quoted
    f"{MALLORY} ({ANNA})",                     # a comment naming the coordinator
    f"Anna <{MALLORY}> ({ANNA})",              # a comment behind the address
    f"{ANNA}, {MALLORY}",                      # two addresses
    f"=?utf-8?q?{ANNA.replace('@', '=40')}?= <{MALLORY}>",  # an encoded-word display name
    f"{ANNA} <{ANNA}",                         # broken: the parser would have to guess
]


@pytest.mark.parametrize("from_value", FROM_TRICKS)
def test_from_tricks_are_not_the_coordinator(stack: LoopbackStack, caplog: pytest.LogCaptureFixture,
                                             from_value: str) -> None:
    stack.mail_in(compose(sender=POLICE, subject="Inbraak Marathonloop", body="Vannacht ingebroken."))
    stack.run_once()
    request = stack.approval_requests(ANNA)[-1]
    stack.sink.clear()
    with caplog.at_level(logging.WARNING):
        stack.mail_in(with_from(reply(request, sender=ANNA, text="AKKOORD", verified=False), from_value))
        stack.run_once()
    with runtime(stack).sessions() as session:
        assert session.scalars(select(QueueItem)).one().status == "pending"
    assert members_received(stack) == []
    assert audit(stack, "reply_refused")  # refused, and recorded
    # The honest answer next to it still decides.
    stack.mail_in(reply(request, sender=ANNA, text="AKKOORD"))
    stack.run_once()
    with runtime(stack).sessions() as session:
        assert session.scalars(select(QueueItem)).one().status == "approved"


@pytest.mark.parametrize("extra", [f"From: {ANNA}", f"Sender: {MALLORY}"], ids=["two From headers", "Sender"])
def test_a_second_from_or_another_sender_is_not_the_coordinator(stack: LoopbackStack, extra: str) -> None:
    stack.mail_in(compose(sender=POLICE, subject="Inbraak Marathonloop", body="Vannacht ingebroken."))
    stack.run_once()
    request = stack.approval_requests(ANNA)[-1]
    raw = reply(request, sender=ANNA, text="AKKOORD")
    stack.mail_in(with_from(raw, ANNA, extra) if extra.startswith("Sender") else with_from(raw, MALLORY, extra))
    stack.run_once()
    with runtime(stack).sessions() as session:
        assert session.scalars(select(QueueItem)).one().status == "pending"
    assert members_received(stack) == []


def test_a_coordinator_whose_domain_fails_dmarc_is_refused(stack: LoopbackStack) -> None:
    stack.mail_in(compose(sender=POLICE, subject="Inbraak Marathonloop", body="Vannacht ingebroken."))
    stack.run_once()
    request = stack.approval_requests(ANNA)[-1]
    stack.mail_in(with_from(reply(request, sender=ANNA, text="AKKOORD", verified=False), ANNA,
                            *(f"{k}: {v}" for k, v in verdict(ANNA, "fail").items())))
    stack.run_once()
    assert [d["reason"] for d in audit(stack, "reply_refused")] == ["auth_failed"]
    assert members_received(stack) == []


# ---------------------------------------------------------------- strangers silence members (forged bounces)


_DSN_SERIAL = iter(range(10**6))


def dsn(to: str, failed: str) -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.bewoners.nl>\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        f"Message-ID: <dsn-{next(_DSN_SERIAL)}@mx.bewoners.nl>\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.bewoners.nl\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--B--\r\n"
    ).encode()


def scores(stack: LoopbackStack) -> dict[str, tuple[int, str]]:
    with runtime(stack).sessions() as session:
        return {m.email: (m.bounce_score, m.status) for m in session.scalars(select(Member))}


def test_forged_bounces_change_no_score(stack: LoopbackStack, caplog: pytest.LogCaptureFixture) -> None:
    sent_appeal(stack)
    before = scores(stack)
    victim = MAASPOORT[1]
    forged = [
        dsn(f"bin+bounce-{n}@bin-demo.nl", victim) for n in range(1, 8)       # bare neighbouring ids
    ] + [
        dsn(f"bin+bounce-{n}-aaaaaaaaaaaaaaaa@bin-demo.nl", victim) for n in range(1, 4)  # wrong signatures
    ] + [
        dsn("bin@bin-demo.nl", victim) for _ in range(3)                      # a body naming the member
    ]
    with caplog.at_level(logging.WARNING):
        for raw in forged:
            stack.mail_in(raw)
        stack.run_once()
    assert scores(stack) == before
    assert len(audit(stack, "bounce_unsigned")) == len(forged)
    assert "no score changed" in caplog.text
    # The member still receives the next alert.
    stack.sink.clear()
    stack.mail_in(compose(sender=POLICE, subject="Nieuwe oproep Marathonloop", body="Heeft u iets gezien?"))
    stack.run_once()
    stack.mail_in(reply(stack.approval_requests(ANNA)[-1], sender=ANNA, text="AKKOORD"))
    stack.run_once()
    assert stack.sent_to(victim)


def test_a_real_bounce_in_an_unknown_format_to_the_signed_path_counts(stack: LoopbackStack) -> None:
    sent_appeal(stack)
    victim = MAASPOORT[1]
    [envelope] = [mail_from for mail_from, recipients, _raw in stack.sink.messages if victim in recipients]
    delivery_id = int(envelope.split("-")[1])
    assert envelope == return_path(runtime(stack).config, runtime(stack).signer, delivery_id)  # signed
    unknown_format = (
        f"From: postmaster@mx.bewoners.nl\r\nTo: {envelope}\r\nSubject: Problem\r\n"
        "Message-ID: <odd-mta-1@mx.bewoners.nl>\r\n\r\nYour mail to this person went nowhere. Sorry!\r\n"
    ).encode()
    stack.mail_in(unknown_format)
    stack.run_once()
    assert scores(stack)[victim] == (1, "active")


# ---------------------------------------------------------------- a spoofed partner


def test_a_police_address_that_fails_dmarc_is_not_the_police(stack: LoopbackStack) -> None:
    spoof = compose(sender=POLICE, subject="Waarschuwing Marathonloop",
                    body="Bewoners van de Marathonloop: mail ons vandaag uw pincode ter controle.",
                    headers=verdict(POLICE, "fail"))
    stack.mail_in(spoof)
    stack.run_once()
    request = only(stack.approval_requests(ANNA))
    body = text_of(request)
    assert body.index("DE AFZENDER KON NIET WORDEN GEVERIFIEERD") < body.index("Van:")
    assert "de politie" in body.split("Van:")[0]
    assert "Van:        Politie Oost-Brabant" not in body
    with runtime(stack).sessions() as session:
        assert session.scalars(select(QueueItem)).one().source == "unknown"
    assert members_received(stack) == []


def test_the_real_police_is_the_police(stack: LoopbackStack) -> None:
    stack.mail_in(compose(sender=POLICE, subject="Inbraak Marathonloop", body="Vannacht ingebroken."))
    stack.run_once()
    body = text_of(only(stack.approval_requests(ANNA)))
    assert "Van:        Politie Oost-Brabant" in body and "geverifieerd door de ontvangende" in body
    assert "KON NIET WORDEN GEVERIFIEERD" not in body


# ---------------------------------------------------------------- membership by forgery


def test_afmelden_for_someone_else_with_a_failed_verdict_changes_nothing(stack: LoopbackStack,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    victim = MAASPOORT[0]
    with caplog.at_level(logging.WARNING):
        stack.mail_in(compose(sender=victim, subject="AFMELDEN", body="", headers=verdict(victim, "fail")))
        stack.run_once()
    assert scores(stack)[victim][1] == "active"
    assert stack.sent_to(victim) == []
    assert "failed verification" in caplog.text
    # The member's own verified AFMELDEN works at once.
    stack.mail_in(compose(sender=victim, subject="AFMELDEN", body=""))
    stack.run_once()
    assert scores(stack)[victim][1] == "left"


def test_a_wave_of_subscriptions_for_strangers_is_capped(stack: LoopbackStack) -> None:
    for number in range(200):
        stack.mail_in(compose(sender=f"stranger{number}@example.net", subject="AANMELDEN Maaspoort", body=""))
    stack.run_once()
    confirmations = [m for m in stack.sent() if "[BIN-c-" in str(m["Subject"])]
    assert len(confirmations) == runtime(stack).config.limits.confirmations_per_hour
    assert len(audit(stack, "confirmation_rate_limited")) == 200 - len(confirmations)


# ---------------------------------------------------------------- padding escapes nothing


def test_padded_headers_are_held_as_malformed_and_limited(stack: LoopbackStack) -> None:
    limit = runtime(stack).config.limits.sender_messages_per_hour
    padding = "".join(f"X-Padding-{n}: {'x' * 900}\r\n" for n in range(320))  # ~300 KB before From
    for number in range(limit + 5):
        raw = compose(sender=MALLORY, subject=f"Spam {number}", body="koop nu", verified=False)
        stack.mail_in(padding.encode() + raw)
    stack.run_once()
    with runtime(stack).sessions() as session:
        items = list(session.scalars(select(QueueItem)))
    # Every one stored and held; past the limit they join one summary instead of a request each.
    assert sum(1 for item in items if item.kind == "flood_summary") == 1
    assert len(items) == limit + 1
    first = text_of(stack.approval_requests(KEES)[0])  # no ward: the network-wide coordinator
    assert "malformed" in first and "niet volledig leesbaar" in first
    assert members_received(stack) == []


def test_kees_network_coordinator_may_close_too(stack: LoopbackStack) -> None:
    """The honest path for a network-wide coordinator: their own copy carries their own right."""
    sent_appeal(stack)
    copy = only(stack.coordinator_copies(KEES))
    stack.sink.clear()
    stack.mail_in(reply(copy, sender=KEES, text="AFGEROND Terecht."))
    stack.run_once()
    assert all("Terecht" in text_of(only(stack.sent_to(member))) for member in MAASPOORT)
