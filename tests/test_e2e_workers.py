"""Three `binrelay run` daemons on one private PostgreSQL and one mailbox: everything happens exactly once.

A mixed load (residents' and police reports, coordinators' approvals, members'
replies to the alerts, fan-outs to a ward of 200) goes through three real
daemon processes at once. Counted at the end: one item per report, one
approval request per item, one copy of each alert per member, no message
failed, and the daemons' INFO logs name nobody.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import func, select

from relay.devservers.dovecot import PrivateDovecot
from relay.devservers.stack import LoopbackStack, compose, reply
from relay.service.clock import FrozenClock
from relay.service.runtime import Runtime
from storage import workers
from storage.models import Delivery, Message, QueueItem
from tests.e2e import ANNA, MAASPOORT, make_stack

pytestmark = [pytest.mark.dovecot, pytest.mark.postgres, pytest.mark.slow]

DAEMONS = 3
WARD_SIZE = 200
STREETS = ["Marathonloop", "Olympiaplein"]
RESIDENT_REPORTS = [
    ("Inbraak schuur", "Vannacht is bij ons de schuur opengebroken, twee fietsen weg."),
    ("Verdachte bus", "Een witte bus zonder kenteken rijdt al een uur stapvoets rondjes."),
    ("Graffiti", "Het bushokje is volgekalkt met graffiti, ook de bank ernaast."),
    ("Pakket gestolen", "Ons pakket is van de stoep gestolen vlak nadat het bezorgd was."),
    ("Babbeltruc", "Een man belde aan als monteur van de waterleiding en wilde binnen kijken."),
    ("Vuurwerkoverlast", "Jongeren steken elke avond zwaar vuurwerk af bij het speeltuintje."),
    ("Auto opengebroken", "Bij drie auto's is vannacht de ruit ingeslagen, navigatie weg."),
    ("Fietsendiefstal", "Mijn fiets is overdag van het slot geknipt bij de ingang van de flat."),
    ("Nepagent", "Iemand die zich voordeed als agent vroeg aan de deur naar onze pinpas."),
    ("Loslopende hond", "Een grote hond loopt al de hele ochtend los tussen de huizen."),
]
POLICE_REPORTS = [
    ("Woninginbraken in de wijk", "De politie ziet deze week meer woninginbraken in de wijk. Sluit ramen en deuren."),
    ("Oplichting via WhatsApp", "Let op berichten van zogenaamde familieleden die om geld vragen via WhatsApp."),
    ("Getuigen gezocht", "Wie zag gisteravond rond 22.00 uur een scooter met twee personen wegrijden?"),
]
APPROVED = 6  # of the requests; the others stay pending
REPLIES = 3  # members who answer an alert they got


def member_addresses() -> list[str]:
    return [f"lid{n}@bewoners.nl" for n in range(WARD_SIZE)]


@pytest.fixture
def stack(tmp_path: Path, dovecot_server: PrivateDovecot, clock: FrozenClock,
          postgres_url: str) -> Iterator[LoopbackStack]:
    config = {
        "database": {"url": postgres_url},
        "approval": {"merge_window_minutes": 0, "token_key_env": "BINRELAY_TEST_TOKEN_KEY",
                     "token_key_auto": False},
    }
    running = make_stack(tmp_path, dovecot_server, clock, config=config)
    running.add_members("maaspoort", member_addresses())
    yield running
    running.stop()


@pytest.fixture
def daemons(stack: LoopbackStack) -> Iterator[list[subprocess.Popen[str]]]:
    processes = [
        subprocess.Popen([sys.executable, "-m", "relay.cli.main", "--config", str(stack.config_path), "run"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(DAEMONS)
    ]
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout} s: {what}")


def quiet(stack: LoopbackStack, seconds: float = 3.0) -> bool:
    """Nothing new in the sink for ``seconds``, nothing waiting in the database."""
    before = len(stack.sink.messages)
    time.sleep(seconds)
    if len(stack.sink.messages) != before:
        return False
    assert stack.daemon is not None and stack.daemon.runtime is not None
    with stack.daemon.runtime.sessions() as session:
        new = session.scalar(select(func.count()).select_from(Message).where(Message.status == "new"))
        pending = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == "pending"))
    return new == 0 and pending == 0


def live(rt: Runtime) -> list[str]:
    with rt.sessions() as session:
        return [worker.id for worker in workers.live_workers(session, datetime.now(UTC))]


def alerts_to(stack: LoopbackStack, address: str) -> list[EmailMessage]:
    return [m for m in stack.sent_to(address) if str(m["Subject"]).startswith("[Maaspoort]")]


def test_three_daemons_on_one_database_do_everything_once(
        stack: LoopbackStack, daemons: list[subprocess.Popen[str]]) -> None:
    residents = member_addresses()[:len(RESIDENT_REPORTS)]
    mail = [compose(sender=sender, subject=subject, body=f"{body} Adres: {STREETS[n % 2]} {n + 1}.")
            for n, (sender, (subject, body)) in enumerate(zip(residents, RESIDENT_REPORTS, strict=True))]
    mail += [compose(sender=f"wijkagent{n}@politie.nl", subject=subject, body=f"{body} Wijk Maaspoort.")
             for n, (subject, body) in enumerate(POLICE_REPORTS)]
    assert stack.daemon is not None and stack.daemon.runtime is not None
    rt = stack.daemon.runtime
    wait_until("three live workers", lambda: len(live(rt)) == DAEMONS, timeout=30)
    stack.dovecot.deliver_many(stack.mailbox_user, mail)
    reports = len(mail)
    wait_until("a request per report", lambda: len(stack.approval_requests(ANNA)) >= reports)

    requests = stack.approval_requests(ANNA)
    for request in requests[:APPROVED]:
        stack.mail_in(reply(request, sender=ANNA, text="AKKOORD"))
    wait_until("every approved alert at every member",
               lambda: all(len(alerts_to(stack, a)) >= APPROVED for a in residents[-2:]) and quiet(stack))

    answered = [alerts_to(stack, address)[0] for address in MAASPOORT[:REPLIES]]
    for address, alert in zip(MAASPOORT, answered, strict=False):
        stack.mail_in(reply(alert, sender=address, text="Ik heb gisteren hetzelfde gezien bij de speeltuin."))
    wait_until("a request per reply", lambda: len(stack.approval_requests(ANNA)) >= reports + REPLIES)
    wait_until("all quiet", lambda: quiet(stack))

    # One request per item: every request's subject is different and nothing came twice.
    subjects = Counter(str(m["Subject"]) for m in stack.approval_requests(ANNA))
    assert len(subjects) == reports + REPLIES and max(subjects.values()) == 1
    # One copy of each alert per member, and each member got every alert.
    copies = Counter((str(m["Subject"]), address) for address in [*member_addresses(), *MAASPOORT]
                     for m in alerts_to(stack, address))
    assert max(copies.values()) == 1
    assert len({subject for subject, _ in copies}) == APPROVED
    assert all(len(alerts_to(stack, address)) == APPROVED for address in member_addresses()[len(residents):])
    assert len(live(rt)) == DAEMONS  # all three competed to the end
    with rt.sessions() as session:
        items_per_message = Counter(session.scalars(select(QueueItem.message_id)))
        statuses = Counter(session.scalars(select(Message.status)))
    assert len(items_per_message) == reports + REPLIES and max(items_per_message.values()) == 1
    assert statuses["failed"] == 0 and statuses["new"] == 0

    outputs = []
    for process in daemons:
        process.send_signal(signal.SIGTERM)
    for process in daemons:
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 0, output[-3000:]
        outputs.append(output)
    assert live(rt) == []  # each removed itself on SIGTERM
    people = [*member_addresses(), *MAASPOORT, ANNA, *(f"wijkagent{n}@politie.nl" for n in range(3))]
    named = [address for address in people if any(address in output for output in outputs)]
    assert named == [], "INFO logs name people"
