"""Decisions: atomic on both backends, told to the others, and the operator's queue commands."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time
from datetime import datetime
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from relay.approvals.decide import Decision, decide
from relay.cli.queue import queue_approve, queue_list, queue_reject, queue_show
from relay.service.clock import FrozenClock
from relay.service.runtime import Runtime, build_runtime
from storage.db import make_engine, migrate
from storage.models import Alert, QueueItem
from tests.test_approvals_helpers import (
    ANNA,
    BERT,
    KEES,
    MEMBER,
    add_members,
    approval_config,
    audit_actions,
    hold_message,
    item,
    outbox,
    report,
    run_in_threads,
)
from tests.test_approvals_helpers import any_engine as _shared_any_engine

any_engine = _shared_any_engine  # the fixture: a migrated database on each backend


def _decide(rt: Runtime, item_id: int, decision: Decision, actor: str) -> bool:
    with rt.sessions() as session, session.begin():
        stored = session.get(QueueItem, item_id)
        assert stored is not None
        return decide(rt, session, stored, decision, actor=actor, now=rt.clock.now())


def _race(rt: Runtime, item_id: int, reasons: dict[str, str], both_read_first: bool) -> dict[str, bool]:
    """Two coordinators decide one item in two threads at the same moment."""
    barrier = threading.Barrier(len(reasons), timeout=30)
    results: dict[str, bool] = {}

    def attempt(actor: str) -> None:
        if not both_read_first:
            barrier.wait()
        with rt.sessions() as session, session.begin():
            stored = session.get(QueueItem, item_id)
            assert stored is not None
            if both_read_first:
                barrier.wait()
            decision = Decision("reject", reason=reasons[actor])
            results[actor] = decide(rt, session, stored, decision, actor=actor, now=rt.clock.now())

    run_in_threads([partial(attempt, actor) for actor in reasons])
    return results


def test_two_coordinators_at_once_exactly_one_wins(any_engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), any_engine, clock)
    # PostgreSQL: both read the pending item, then both UPDATE. SQLite takes the
    # write lock at BEGIN, so there the two transactions start together instead.
    both_read_first = any_engine.dialect.name == "postgresql"
    for round_number in range(5):
        item_id = hold_message(rt, report(subject=f"Ronde {round_number}"))
        reasons = {actor: f"door {actor} ({round_number})" for actor in (ANNA, BERT)}
        results = _race(rt, item_id, reasons, both_read_first)
        assert sorted(results.values()) == [False, True]
        winner = next(actor for actor, won in results.items() if won)
        stored = item(rt.sessions, item_id)
        assert stored.status == "rejected" and stored.decided_by == winner and stored.reason == reasons[winner]
        decisions = [(a, d["reason"]) for a, action, d in audit_actions(rt.sessions)
                     if action == "rejected" and d["reason"].endswith(f"({round_number})")]
        assert decisions == [(winner, reasons[winner])]


def test_rejection_answers_the_resident_and_tells_the_other_coordinators(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    assert _decide(rt, item_id, Decision("reject", reason="Dit is al bekend bij de politie."), ANNA)
    answer = outbox(rt.sessions, "answer_rejected")
    assert [sent.recipient for sent in answer] == [MEMBER]
    assert "Reden: Dit is al bekend bij de politie." in answer[0].body and "112" in answer[0].body
    told = outbox(rt.sessions, "approval_decided")
    assert [sent.recipient for sent in told] == [BERT]
    assert f"besloten door {ANNA}" in told[0].body and "afgewezen" in told[0].body
    assert not _decide(rt, item_id, Decision("approve"), BERT)  # the first decision stands
    assert item(rt.sessions, item_id).status == "rejected"


def test_unknown_senders_hear_nothing_when_rejected(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report(sender="spam@example.com"), source="unknown")
    assert _decide(rt, item_id, Decision("reject", reason="spam"), KEES)
    assert outbox(rt.sessions, "answer_rejected") == []


def test_partner_only_goes_to_the_partner_and_not_to_members(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report(body="Verdacht busje, kenteken 12-ABC-3."), category="suspicious")
    assert _decide(rt, item_id, Decision("partner_only", partners=["police"]), ANNA)
    stored = item(rt.sessions, item_id)
    assert stored.status == "approved" and stored.target_wards == [] and stored.partners == ["police"]
    forwarded = outbox(rt.sessions, "partner_forward")
    assert [sent.recipient for sent in forwarded] == ["wijkagent@politie.nl"]
    assert "Verdacht busje" in forwarded[0].body
    assert outbox(rt.sessions, "alert") == []  # no member gets it
    assert "alleen doorgegeven aan partner" in outbox(rt.sessions, "approval_decided")[0].body


# ---------------------------------------------------------------- the queue command line


def test_queue_list_shows_pending_items_as_json_lines(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    first = hold_message(rt, report(subject="Eerste"))
    second = hold_message(rt, report(subject="Tweede"), urgency="urgent")
    _decide(rt, first, Decision("reject"), ANNA)
    out = io.StringIO()
    assert queue_list(rt, True, out) == 0
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row["id"] for row in rows] == [second]
    assert rows[0]["subject"] == "Tweede" and rows[0]["urgency"] == "urgent" and rows[0]["wards"] == ["maaspoort"]
    # The network's local time with its offset (the frozen clock stands in December: +01:00).
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", rows[0]["created_at"])
    zone = ZoneInfo(rt.config.delivery.timezone)
    assert datetime.fromisoformat(rows[0]["created_at"]).utcoffset() == clock.now().astimezone(zone).utcoffset()
    table = io.StringIO()
    assert queue_list(rt, False, table) == 0
    assert "Tweede" in table.getvalue() and "Eerste" not in table.getvalue()
    assert rows[0]["created_at"][:16].replace("T", " ") + rows[0]["created_at"][19:] in table.getvalue()


def test_queue_show_prints_the_item_and_its_audit_trail(engine: Engine, clock: FrozenClock,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    out = io.StringIO()
    assert queue_show(rt, item_id, out) == 0
    text = out.getvalue()
    assert "Vannacht is er ingebroken in mijn schuur." in text and "held" in text and "maaspoort" in text
    assert queue_show(rt, item_id + 100, io.StringIO()) == 1
    assert f"no queue item {item_id + 100}" in capsys.readouterr().err


def test_operator_decisions_are_audited_and_refused_twice(engine: Engine, clock: FrozenClock,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    rejected = hold_message(rt, report(subject="Een"))
    assert queue_reject(rt, rejected, "dubbel", "operator:piet", io.StringIO()) == 0
    stored = item(rt.sessions, rejected)
    assert stored.status == "rejected" and stored.reason == "dubbel" and stored.decided_by == "operator:piet"
    assert ("operator:piet", "rejected") in [(a, b) for a, b, _ in audit_actions(rt.sessions)]
    assert sorted(s.recipient for s in outbox(rt.sessions, "approval_decided")) == [ANNA, BERT]
    assert queue_reject(rt, rejected, None, "operator:piet", io.StringIO()) == 1
    assert "already rejected" in capsys.readouterr().err
    assert queue_approve(rt, 9999, "piet", io.StringIO()) == 1


# ---------------------------------------------------------------- approval publishes


def _members(rt: Runtime, *rows: tuple[str, str]) -> None:
    add_members(rt, list(rows))


def test_approval_publishes_an_alert_to_every_member_of_the_target_wards(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    _members(rt, ("a@example.net", "maaspoort"), ("b@example.net", "maaspoort"), ("c@example.net", "empel"))
    item_id = hold_message(rt, report())
    assert _decide(rt, item_id, Decision("approve", target_wards=["empel", "maaspoort"], partners=["police"]), ANNA)
    with rt.sessions() as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.queue_item_id == item_id and alert.wards == ["empel", "maaspoort"]
        assert alert.body == "Vannacht is er ingebroken in mijn schuur."
    assert sorted(sent.recipient for sent in outbox(rt.sessions, "alert")) == [
        "a@example.net", "b@example.net", "c@example.net"]
    assert [sent.recipient for sent in outbox(rt.sessions, "partner_forward")] == ["wijkagent@politie.nl"]
    stored = item(rt.sessions, item_id)
    assert stored.status == "approved" and stored.alert_id == alert.id and stored.partners == ["police"]
    told = outbox(rt.sessions, "approval_decided")
    assert [sent.recipient for sent in told] == [BERT] and "Empel, Maaspoort" in told[0].body


def test_edited_text_replaces_the_original(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    _members(rt, ("a@example.net", "maaspoort"))
    item_id = hold_message(rt, report(body="Ingebroken bij Marathonloop 12, bel 06-12345678."))
    assert _decide(rt, item_id, Decision("approve", edited_text="Inbraak in een schuur aan de Marathonloop."), ANNA)
    with rt.sessions() as session:
        assert session.scalars(select(Alert)).one().body == "Inbraak in een schuur aan de Marathonloop."


def test_approved_reply_to_an_alert_goes_to_its_original_sender_only(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    _members(rt, ("a@example.net", "maaspoort"), (MEMBER, "maaspoort"))
    police = hold_message(rt, report(subject="Getuigen gezocht", body="Wie zag iets?", sender="agent@politie.nl"),
                          source="police", partner="Politie Oost-Brabant", category="info")
    assert _decide(rt, police, Decision("approve"), ANNA)
    with rt.sessions() as session:
        alert = session.scalars(select(Alert)).one()
        tag, alert_id = alert.tag, alert.id
    raw = report(subject="Re: Getuigen gezocht", body="Ik zag een scooter.",
                 **{"In-Reply-To": f"<alert-{tag}.2@example.org>"})
    reply_item = hold_message(rt, raw, category="info", wards=())
    stored = item(rt.sessions, reply_item)
    assert stored.kind == "reply_to_alert" and stored.alert_id == alert_id
    alerts_before = len(outbox(rt.sessions, "alert"))
    assert _decide(rt, reply_item, Decision("approve"), BERT)
    forwarded = outbox(rt.sessions, "reply_forward")
    assert [sent.recipient for sent in forwarded] == ["agent@politie.nl"]
    assert "Ik zag een scooter." in forwarded[0].body
    assert len(outbox(rt.sessions, "alert")) == alerts_before  # not to the ward


def test_binrelay_queue_commands_end_to_end(tmp_path: Path, clock: FrozenClock,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from relay.cli.main import main

    url = f"sqlite:///{tmp_path / 'queue.db'}"
    config_file = tmp_path / "binrelay.toml"
    config_file.write_text(
        '[network]\nname = "BIN Test"\naddress = "bin@example.org"\ncoordinators = ["kees@example.org"]\n'
        '[imap]\nhost = "127.0.0.1"\nusername = "bin@example.org"\npassword_env = "X_IMAP"\n'
        '[smtp]\nhost = "127.0.0.1"\n'
        f'[database]\nurl = "{url}"\n'
        '[[wards]]\nslug = "maaspoort"\nname = "Maaspoort"\ncoordinators = ["anna@example.org"]\n',
        encoding="utf-8",
    )
    engine = make_engine(url)
    migrate(engine)
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report(subject="Via de opdrachtregel"))
    capsys.readouterr()
    assert main(["--config", str(config_file), "queue", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(row["id"], row["subject"]) for row in rows] == [(item_id, "Via de opdrachtregel")]
    assert main(["--config", str(config_file), "queue", "reject", str(item_id), "--reason", "dubbel"]) == 0
    assert main(["--config", str(config_file), "queue", "approve", str(item_id)]) == 1
    assert main(["--config", str(config_file), "queue", "show", "424242"]) == 1
    stored = item(rt.sessions, item_id)
    assert stored.status == "rejected" and stored.reason == "dubbel" and (stored.decided_by or "").startswith("operator:")
    engine.dispose()


RACER = """
import json, sys, time
from datetime import datetime, timezone
from relay.approvals.decide import Decision, decide
from relay.service.clock import FrozenClock
from storage.db import make_engine
from storage.models import QueueItem
from relay.service.runtime import build_runtime
from tests.test_approvals_helpers import approval_config

url, item_id, actor, start = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
clock = FrozenClock(datetime(2026, 11, 23, 9, 5, tzinfo=timezone.utc))
rt = build_runtime(approval_config(), make_engine(url), clock)
with rt.sessions() as session, session.begin():
    item = session.get(QueueItem, item_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            open(start).close()
            break
        except FileNotFoundError:
            time.sleep(0.005)
    won = decide(rt, session, item, Decision("reject", reason="door " + actor), actor=actor, now=rt.clock.now())
print(json.dumps({"actor": actor, "won": won}))
"""


@pytest.mark.postgres
def test_two_processes_deciding_at_once_on_postgresql(postgres_url: str, clock: FrozenClock,
                                                     tmp_path: Path) -> None:
    engine = make_engine(postgres_url)
    migrate(engine)
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    start = tmp_path / "go"
    root = Path(__file__).resolve().parents[1]
    racers = [
        subprocess.Popen([sys.executable, "-c", RACER, postgres_url, str(item_id), actor, str(start)],
                         cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for actor in (ANNA, BERT)
    ]
    try:
        time.sleep(1.0)  # both have read the pending item and wait for the start signal
        start.touch()
        outputs = [racer.communicate(timeout=60) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
    results = [json.loads(out) for out, err in outputs if out.strip()]
    assert len(results) == 2, [err for _, err in outputs]
    assert sorted(r["won"] for r in results) == [False, True]
    winner = next(r["actor"] for r in results if r["won"])
    stored = item(rt.sessions, item_id)
    assert stored.decided_by == winner and stored.reason == f"door {winner}"
    assert [a for a, action, _ in audit_actions(rt.sessions) if action == "rejected"] == [winner]
    engine.dispose()
