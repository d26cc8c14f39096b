"""``binrelay demo``: the whole flow on loopback, narrated, in well under a minute.

A private Dovecot holds the network mailbox, an SMTP sink stands in for the
mail server, and a SQLite file is the database. The police mail an alert and a
resident mails a report; binrelay classifies both and asks the coordinator;
the coordinator answers from her "phone" with one word; the members receive
the alert, one private message each.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path
from typing import TextIO

from relay.devservers.dovecot import DovecotUnavailable
from relay.devservers.stack import LoopbackStack, compose, parse, reply
from storage.messages import classified_messages

COORDINATOR = "anna@coordinatoren.nl"
MAASPOORT_MEMBERS = ["els@bewoners.nl", "joost@bewoners.nl", "fatima@bewoners.nl"]
EMPEL_MEMBERS = ["piet@bewoners.nl", "ria@bewoners.nl"]

POLICE_ALERT = (
    "Politie Oost-Brabant <wijkagent.maaspoort@politie.nl>",
    "Woninginbraak Marathonloop: getuigen gezocht",
    ("Beste bewoners,\n\nVannacht rond 03:00 uur is ingebroken in een woning aan de "
    "Marathonloop. De daders forceerden een achterraam. Heeft u iets gezien of "
    "camerabeelden? Bel 0900-8844.\n\nMet vriendelijke groet,\nWijkagent Maaspoort\n"),
)
RESIDENT_REPORT = (
    "Els <els@bewoners.nl>",
    "verdachte man bij de auto's",
    ("Hoi, er loopt nu een man aan de portieren van geparkeerde auto's te trekken "
    "op het Olympiaplein, grijze hoodie, liep richting het park.\n\nGroetjes Els\n"),
)


def run_demo(keep: Path | None, out: TextIO) -> int:
    """The narrated demo; with ``keep`` its configuration and database stay in that folder."""
    started = time.monotonic()
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    workdir = keep if keep is not None else Path(tempfile.mkdtemp(prefix="binrelay-demo-"))
    say = _Narrator(out)
    try:
        with LoopbackStack(workdir) as stack:
            _play(stack, say)
    except DovecotUnavailable as error:
        out.write(f"binrelay demo needs Dovecot: {error}\n")
        return 1
    finally:
        if keep is not None:
            out.write(f"\nThe configuration and database are kept in {workdir} (binrelay.toml, binrelay.db).\n")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    say.line(f"\nDone in {time.monotonic() - started:.1f} s.")
    return 0


def _play(stack: LoopbackStack, say: _Narrator) -> None:
    say.step("A private IMAP server (Dovecot) and SMTP server are running on 127.0.0.1.")
    stack.add_members("maaspoort", MAASPOORT_MEMBERS)
    stack.add_members("empel", EMPEL_MEMBERS)
    say.line(f"Ward Maaspoort has {len(MAASPOORT_MEMBERS)} members, Empel {len(EMPEL_MEMBERS)}; "
             f"{COORDINATOR} coordinates Maaspoort.")

    say.step("The police mail an alert, a resident mails a report.")
    for sender, subject, body in (POLICE_ALERT, RESIDENT_REPORT):
        stack.mail_in(compose(sender=sender, subject=subject, body=body))
        say.line(f"  in:  {sender}: {subject}")
    stack.run_once()
    _show_classifications(stack, say)

    requests = stack.approval_requests(COORDINATOR)
    say.step(f"The coordinator received {len(requests)} approval requests:")
    for request in requests:
        say.line(f"  {request['Subject']}")
        say.line(f"    Reply-To: {request['Reply-To']}")
    if len(requests) < 2:
        raise RuntimeError("the demo expected two approval requests; see the log above")
    police_request = _about(requests, "Marathonloop")
    resident_request = _about(requests, "auto")
    say.line("\n" + _indent(_text(police_request), 20))

    stack.sink.clear()
    say.step("She answers the police alert from her phone with one word: AKKOORD.")
    stack.mail_in(reply(police_request, sender=COORDINATOR, text="Akkoord\n\nVerzonden vanaf mijn iPhone"))
    say.line("And the resident's report with an edit, and passes it to the police:")
    edited = ("WIJZIG\nEr probeerde zojuist iemand autoportieren te openen op het Olympiaplein; "
              "hij liep richting het park. Ziet u iets, bel 112.\nPOLITIE")
    say.line(_indent(edited, 10, prefix="    | "))
    stack.mail_in(reply(resident_request, sender=COORDINATOR, text=edited))
    stack.run_once()
    _show_deliveries(stack, say)


def _show_classifications(stack: LoopbackStack, say: _Narrator) -> None:
    assert stack.daemon is not None and stack.daemon.runtime is not None
    say.step("binrelay stored both before moving them out of the inbox, and classified them:")
    with stack.daemon.runtime.sessions() as session:
        for subject, cls in classified_messages(session):
            say.line(f"  {subject}")
            say.line(f"    source={cls.source} kind={cls.kind} category={cls.category} "
                     f"wards={cls.wards} urgency={cls.urgency}")
            for reason in cls.explanation[:4]:
                say.line(f"      because {reason}")


def _show_deliveries(stack: LoopbackStack, say: _Narrator) -> None:
    sent = stack.sink.messages
    say.step(f"binrelay sent {len(sent)} messages, one private message per recipient:")
    for _sender, recipients, raw in sent:
        message = parse(raw)
        say.line(f"  to {', '.join(recipients):28s} {message['Subject']}")
    members = stack.sent_to(MAASPOORT_MEMBERS[1])
    if members:
        say.step(f"What {MAASPOORT_MEMBERS[1]} received first:")
        say.line(_indent(_text(members[0]), 24))


def _about(requests: list[EmailMessage], word: str) -> EmailMessage:
    for request in requests:
        if word.lower() in str(request["Subject"]).lower():
            return request
    return requests[0]


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    return part.get_content() if part is not None else ""


def _indent(text: str, max_lines: int, prefix: str = "    | ") -> str:
    lines = text.strip().splitlines()
    shown = lines[:max_lines] + (["…"] if len(lines) > max_lines else [])
    return "\n".join(prefix + line for line in shown)


class _Narrator:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.number = 0

    def step(self, text: str) -> None:
        self.number += 1
        self.out.write(f"\n[{self.number}] {text}\n")
        self.out.flush()

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()
