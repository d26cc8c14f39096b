"""Soak: binrelay running for a while against Dovecot and an SMTP sink.

    .venv/bin/python bench/soak.py [--seconds 120] [--rate 5] [--seed 1]

Every tick mails the network address a steady mix: residents' reports,
coordinators' AKKOORD replies to the requests that came out, member commands
(HELP, preferences), out-of-office auto-replies and bounces of alert copies.
binrelay runs its passes (ingest, classify, route, deliver, due jobs) all the
while. At the end it drains and prints: messages in and stored, alerts
approved and delivered, anything lost or duplicated, and the resident memory
after warm-up and at the end. Exit 1 when something was lost or duplicated
or memory grew more than 20%.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from collections import Counter
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select

from relay.devservers.stack import NETWORK_ADDRESS, LoopbackStack, compose, parse, reply
from storage.models import Alert, Delivery, Message

COORDINATOR = "anna@coordinatoren.nl"
MEMBERS = [f"lid{n}@bewoners.nl" for n in range(40)]
REPORTS = [
    ("Inbraak schuur", "Vannacht is ingebroken in een schuur aan de Marathonloop {n}."),
    ("Verdachte man", "Er loopt een man aan autodeuren te trekken bij het Olympiaplein ({n})."),
    ("Fiets gestolen", "Mijn fiets is gestolen bij de Marathonloop, melding {n}."),
    ("Graffiti", "De muur bij het Olympiaplein is bekladderd, melding {n}."),
]
ALERT_COPY = re.compile(r"<alert-([a-z2-7]{16})\.(\d+)@")
GROWTH_LIMIT = 1.20


def rss_bytes() -> int:
    """Resident memory now (not the peak)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


class Soak:
    """Mails in the mix, answers the requests, and keeps only a compact tally of what came out.

    The SMTP sink runs in this process; it is emptied after every pass so the
    memory measured is binrelay's (plus a hash per alert copy), not the sink's.
    """

    def __init__(self, stack: LoopbackStack, rng: random.Random) -> None:
        self.stack = stack
        self.rng = rng
        self.sent_in = 0
        self.counter = 0
        self.requests: list[EmailMessage] = []
        self.recent_copies: list[str] = []  # To of recent alert copies, to bounce
        self.copies: Counter[int] = Counter()  # hash((tag, recipient)) -> copies received

    def tick(self, rate: int) -> None:
        for _ in range(rate):
            self.mail(self.rng.choices(
                [self.report, self.command, self.auto_reply, self.bounce], weights=[5, 1, 1, 1]
            )[0]())
        for request in self.requests:
            self.mail(reply(request, sender=COORDINATOR, text="AKKOORD"))
        self.requests.clear()
        self.stack.run_once()
        self.drain_sink()

    def drain_sink(self) -> None:
        messages = self.stack.sink.messages
        self.stack.sink.clear()
        for _sender, recipients, raw in messages:
            head = raw.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
            copy = ALERT_COPY.search(head)
            if copy is not None:
                for recipient in recipients:
                    self.copies[hash((copy.group(1), recipient.lower()))] += 1
                self.recent_copies = [*self.recent_copies[-20:], recipients[0]]
            elif COORDINATOR in recipients and "[BIN-" in head and "Subject: [BIN-" in head:
                self.requests.append(parse(raw))

    def mail(self, raw: bytes | None) -> None:
        if raw is not None:
            self.stack.mail_in(raw)
            self.sent_in += 1

    def report(self) -> bytes:
        self.counter += 1
        subject, body = self.rng.choice(REPORTS)
        return compose(sender=self.rng.choice(MEMBERS), subject=f"{subject} {self.counter}",
                       body=body.format(n=self.counter))

    def command(self) -> bytes:
        return compose(sender=self.rng.choice(MEMBERS), subject=self.rng.choice(["HELP", "ALLES"]), body="")

    def auto_reply(self) -> bytes:
        return compose(sender=self.rng.choice(MEMBERS), subject="Afwezig: uw bericht",
                       body="Ik ben afwezig.", headers={"Auto-Submitted": "auto-replied"})

    def bounce(self) -> bytes | None:
        if not self.recent_copies:
            return None
        recipient = self.rng.choice(self.recent_copies)
        dsn = EmailMessage()
        dsn["From"] = "MAILER-DAEMON@mx.example.net"
        dsn["To"] = NETWORK_ADDRESS
        dsn["Subject"] = "Delivery Status Notification (Delay)"
        dsn["Message-ID"] = make_msgid(domain="mx.example.net")  # as every MTA sets one
        dsn["Date"] = formatdate()
        dsn["Auto-Submitted"] = "auto-replied"
        dsn.set_content(f"Delivery to {recipient} is delayed; still trying.")
        return dsn.as_bytes()


def run(seconds: float, rate: int, seed: int) -> int:
    with tempfile.TemporaryDirectory(prefix="binrelay-soak-") as workdir, LoopbackStack(Path(workdir)) as stack:
        stack.add_members("maaspoort", MEMBERS)
        soak = Soak(stack, random.Random(seed))
        started = time.monotonic()
        warm_until = started + max(2.0, seconds * 0.1)
        rss_start = None
        ticks = 0
        while time.monotonic() - started < seconds:
            soak.tick(rate)
            ticks += 1
            if rss_start is None and time.monotonic() >= warm_until:
                rss_start = rss_bytes()
        for _ in range(5):  # drain: the last replies, their alerts, their deliveries
            soak.tick(0)
        rss_end = rss_bytes()
        rss_start = rss_start or rss_end
        return report(stack, soak, ticks, time.monotonic() - started, rss_start, rss_end)


def report(stack: LoopbackStack, soak: Soak, ticks: int, elapsed: float, rss_start: int, rss_end: int) -> int:
    assert stack.daemon is not None and stack.daemon.runtime is not None
    with stack.daemon.runtime.sessions() as session:
        stored = session.scalar(select(func.count()).select_from(Message)) or 0
        rows = session.execute(
            select(Delivery.alert_id, Delivery.recipient, Delivery.status).where(Delivery.alert_id.is_not(None))
        ).all()
        tags = dict(session.execute(select(Alert.id, Alert.tag)).all())
    expected = {hash((tags[alert_id], recipient)) for alert_id, recipient, status in rows
                if status != "failed" and alert_id is not None}
    copies = soak.copies
    lost = expected - set(copies)
    duplicated = {key: n for key, n in copies.items() if n > 1}
    growth = rss_end / rss_start
    print(f"soak: {elapsed:.0f} s, {ticks} passes")
    client = stack.dovecot.client(stack.mailbox_user)
    waiting = int(client.select_folder("INBOX")[b"EXISTS"])
    client.logout()
    print(f"messages in: {soak.sent_in}, stored: {stored}, still in the inbox: {waiting} "
          f"(lost: {max(0, soak.sent_in - stored)})")
    print(f"alerts approved: {len(tags)}, copies expected: {len(expected)}, delivered: {len(copies)}")
    print(f"lost copies: {len(lost)}, duplicated copies: {len(duplicated)}")
    print(f"memory: {rss_start / 2**20:.1f} MB after warm-up, {rss_end / 2**20:.1f} MB at the end "
          f"(x{growth:.2f}, limit x{GROWTH_LIMIT:.2f})")
    ok = not lost and not duplicated and stored >= soak.sent_in and growth <= GROWTH_LIMIT
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate", type=int, default=5, help="messages mailed in per pass")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    return run(args.seconds, args.rate, args.seed)


if __name__ == "__main__":
    sys.exit(main())
