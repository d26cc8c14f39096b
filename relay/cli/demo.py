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
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TextIO

from relay.devservers.dovecot import DovecotUnavailable
from relay.devservers.stack import LoopbackStack, compose, parse, reply
from relay.service.logsetup import log_to_file
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


# Marks a folder as a demo's, so ``--keep DIR`` may clear it for the next run.
MARKER = ".binrelay-demo"


class DemoFolderInUse(Exception):
    """``--keep DIR`` names a folder with other files in it: the demo will not clear it."""


def run_demo(keep: Path | None, out: TextIO) -> int:
    """The narrated demo; with ``keep`` its configuration, database and log stay in that folder
    (a folder an earlier demo kept is cleared first, so the demo can run again)."""
    started = time.monotonic()
    workdir = _fresh_folder(keep) if keep is not None else Path(tempfile.mkdtemp(prefix="binrelay-demo-"))
    log_file = workdir / "binrelay.log"
    log_to_file(log_file)
    say = _Narrator(out)
    say.line(f"binrelay's own log lines go to {log_file}." if keep is not None else
             "binrelay's own log lines go to a file removed at the end (--keep DIR keeps it).")
    try:
        with LoopbackStack(workdir) as stack:
            _play(stack, say)
    except DovecotUnavailable as error:
        out.write(f"binrelay demo needs Dovecot: {error}\n")
        return 1
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if keep is not None:
        _look_further(workdir, say)
    else:
        say.line("\nRun `binrelay demo --keep DIR` to keep its configuration and database and look further.")
    say.line(f"\nDone in {time.monotonic() - started:.1f} s.")
    return 0


def _fresh_folder(keep: Path) -> Path:
    if keep.exists() and any(keep.iterdir()) and not (keep / MARKER).exists():
        raise DemoFolderInUse(f"--keep: {keep} holds other files; name an empty or new folder")
    if keep.exists():
        shutil.rmtree(keep)
    keep.mkdir(parents=True)
    (keep / MARKER).write_text("a folder binrelay demo made; the next demo with --keep clears it\n")
    return keep


def _look_further(workdir: Path, say: _Narrator) -> None:
    config = workdir / "binrelay.toml"
    month = datetime.now().astimezone().strftime("%Y-%m")
    say.step(f"The configuration, database and log are kept in {workdir}. To look further:")
    for command, what in ((f"binrelay --config {config} status", "what an operator checks first"),
                          (f"binrelay --config {config} queue show 2", "the resident's report: text, decision, audit"),
                          (f"binrelay --config {config} members list", "the members"),
                          (f"binrelay --config {config} report --month {month}", "this month's figures")):
        say.line(f"  {command}\n      {what}")


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
    for request in sorted(requests, key=lambda r: str(r["Subject"]).split("] ", 1)[-1]):  # not by the token
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
    sent = sorted(((", ".join(recipients), str(parse(raw)["Subject"]).strip()) for _sender, recipients, raw
                   in stack.sink.messages))
    width = max((len(to) for to, _subject in sent), default=0)
    say.step(f"binrelay sent {len(sent)} messages, one private message per recipient:")
    for to, subject in sent:
        say.line(f"  to {to:{width}}  {subject}")
    received = sorted(stack.sent_to(MAASPOORT_MEMBERS[1]), key=lambda m: str(m["Subject"]))
    for message in received:
        say.step(f"What {MAASPOORT_MEMBERS[1]} received: {message['Subject']}")
        say.line(_indent(_text(message), 24))
    say.line("\n(The resident's alert is the coordinator's edited text; her name and address are not in it.)")


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
