"""Coordinators correcting the rules' urgency and category by reply: applied, stored, shown, counted."""

from __future__ import annotations

import io
import threading
from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import Engine, select

from relay.cli.queue import queue_show
from relay.config import parse_config
from relay.jobs.report import ALL, build_report, render_chart, render_text
from relay.service.clock import FrozenClock
from relay.service.runtime import Runtime, build_runtime
from relay.service.tokens import new_token
from storage.models import Alert, Correction, Delivery, Member
from tests.test_approvals_helpers import (
    ANNA,
    BERT,
    CARLA,
    KEES,
    add_members,
    approval_config,
    audit_actions,
    config_dict,
    hold_message,
    item,
    outbox,
    reply,
    report,
    run_in_threads,
    token_of,
)
from tests.test_approvals_helpers import any_engine as _shared_any_engine

any_engine = _shared_any_engine  # the fixture: a migrated database on each backend


@pytest.fixture
def rt(engine: Engine, clock: FrozenClock) -> Runtime:
    runtime = build_runtime(approval_config(), engine, clock)
    add_members(runtime, [("a@example.net", "maaspoort"), ("b@example.net", "maaspoort"), ("c@example.net", "empel")])
    return runtime


def _alert(rt: Runtime) -> Alert:
    with rt.sessions() as session:
        alert = session.scalars(select(Alert)).one()
        session.expunge(alert)
        return alert


def _corrections(rt: Runtime) -> list[tuple[str, str | None, str, str, list[str]]]:
    with rt.sessions() as session:
        rows = session.scalars(select(Correction).order_by(Correction.id))
        return [(c.field, c.old_value, c.new_value, c.role, list(c.wards)) for c in rows]


# ---------------------------------------------------------------- with a decision


def test_approve_with_spoed_sends_an_urgent_alert_and_stores_the_correction(rt: Runtime) -> None:
    item_id = hold_message(rt, report())
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="AKKOORD\nSPOED\n\nGroet, Anna")
    stored = item(rt.sessions, item_id)
    assert (stored.status, stored.urgency) == ("approved", "urgent")
    assert _alert(rt).urgency == "urgent"
    assert _corrections(rt) == [("urgency", "normal", "urgent", "ward_coordinator", ["maaspoort"])]
    corrected = [detail for actor, action, detail in audit_actions(rt.sessions) if action == "corrected"]
    assert corrected == [{"field": "urgency", "old": "normal", "new": "urgent", "role": "ward_coordinator",
                          "pending": False}]
    assert "Aangepast: urgentie: normaal → SPOED" in outbox(rt.sessions, "answer_confirmed")[0].body
    assert "Aangepast: urgentie: normaal → SPOED" in outbox(rt.sessions, "approval_decided")[0].body


def test_approve_with_a_category_sends_the_alert_under_the_corrected_category(rt: Runtime) -> None:
    item_id = hold_message(rt, report(), category="other")
    reply(rt, sender=KEES, token=token_of(rt.sessions), body="OK\nCATEGORIE fraude\nWIJK Empel")
    stored = item(rt.sessions, item_id)
    assert (stored.category, stored.target_wards) == ("fraud", ["empel"])
    assert _alert(rt).category == "fraud"
    assert _corrections(rt) == [("category", "other", "fraud", "network_coordinator", ["maaspoort"])]
    assert "Aangepast: categorie: Overig → Oplichting" in outbox(rt.sessions, "answer_confirmed")[0].body


def test_a_corrected_urgent_alert_reaches_members_who_want_only_urgent_ones(rt: Runtime) -> None:
    with rt.sessions() as session, session.begin():
        member = session.scalars(select(Member).where(Member.email == "a@example.net")).one()
        member.preferences = {"urgent_only": True}
    hold_message(rt, report(subject="Eerste"))
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="AKKOORD")
    hold_message(rt, report(subject="Tweede"))
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="AKKOORD\nSPOED")
    with rt.sessions() as session:
        copies = [(row.alert_id, row.recipient) for row in session.scalars(
            select(Delivery).where(Delivery.purpose == "alert").order_by(Delivery.id))]
    first, second = sorted({alert_id for alert_id, _ in copies if alert_id is not None})
    assert sorted(r for a, r in copies if a == first) == ["b@example.net"]
    assert sorted(r for a, r in copies if a == second) == ["a@example.net", "b@example.net"]


def test_reject_with_corrections_stores_them(rt: Runtime) -> None:
    item_id = hold_message(rt, report(), urgency="urgent")
    reply(rt, sender=BERT, token=token_of(rt.sessions, BERT),
          body="AFWIJZEN al bekend\nNIET SPOED\nCATEGORIE overlast")
    stored = item(rt.sessions, item_id)
    assert (stored.status, stored.reason, stored.urgency, stored.category) == (
        "rejected", "al bekend", "normal", "nuisance")
    assert [(f, old, new) for f, old, new, _r, _w in _corrections(rt)] == [
        ("urgency", "urgent", "normal"), ("category", "burglary", "nuisance")]


def test_a_correction_to_what_it_already_is_stores_nothing(rt: Runtime) -> None:
    item_id = hold_message(rt, report(), urgency="low")
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="AKKOORD\nNIET SPOED\nCATEGORIE inbraak")
    assert item(rt.sessions, item_id).urgency == "low"  # NIET SPOED: a low item stays low
    assert _corrections(rt) == []
    assert "Aangepast" not in outbox(rt.sessions, "answer_confirmed")[0].body


def test_an_unknown_category_asks_again_naming_the_known_ones(rt: Runtime) -> None:
    item_id = hold_message(rt, report())
    token = token_of(rt.sessions)
    reply(rt, sender=ANNA, token=token, body="AKKOORD\nCATEGORIE fruade")
    stored = item(rt.sessions, item_id)
    assert (stored.status, stored.category, stored.token_used_at) == ("pending", "burglary", None)
    problem = outbox(rt.sessions, "answer_problem")[0].body
    assert "onbekende categorie 'fruade' (bedoelt u fraude?)" in problem
    assert "inbraak, verdacht, diefstal" in problem and "CATEGORIE naam" in problem
    assert _corrections(rt) == []
    reply(rt, sender=ANNA, token=token, body="AKKOORD\nCATEGORIE fraude")
    assert item(rt.sessions, item_id).category == "fraud"


def test_english_network_answers_in_english(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(parse_config(config_dict(network={"language": "en"})), engine, clock)
    add_members(rt, [("a@example.net", "maaspoort")])
    hold_message(rt, report(), urgency="urgent")
    request = outbox(rt.sessions, "approval_request")[0].body
    assert "URGENT or NOT URGENT  (own line) correct the urgency" in request
    assert "CATEGORY name         (own line) correct the kind, e.g. CATEGORY suspicious" in request
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="APPROVE\nNOT URGENT\nCATEGORY theft")
    assert "Corrected: urgency: URGENT → normal" in outbox(rt.sessions, "answer_confirmed")[0].body
    hold_message(rt, report(subject="Other"))
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="APPROVE\nCATEGORY spaceships")
    assert "unknown category 'spaceships'; known categories: burglary, suspicious" in outbox(
        rt.sessions, "answer_problem")[0].body


def test_the_request_says_how_to_correct(rt: Runtime) -> None:
    hold_message(rt, report())
    request = outbox(rt.sessions, "approval_request")[0].body
    assert "SPOED of NIET SPOED   (eigen regel) urgentie verbeteren" in request
    assert "CATEGORIE naam        (eigen regel) soort verbeteren, bijv. CATEGORIE verdacht" in request


# ---------------------------------------------------------------- without a decision


def test_a_correction_alone_is_noted_and_the_item_waits(rt: Runtime, clock: FrozenClock) -> None:
    item_id = hold_message(rt, report())
    before = item(rt.sessions, item_id)
    token = token_of(rt.sessions)
    reply(rt, sender=ANNA, token=token, body="SPOED\nCATEGORIE verdacht\n\nGroet, Anna")
    stored = item(rt.sessions, item_id)
    assert (stored.status, stored.token_used_at, stored.urgency, stored.category) == (
        "pending", None, "urgent", "suspicious")
    config = rt.config.approval
    assert stored.remind_at == before.created_at + timedelta(minutes=config.remind_urgent_minutes)
    assert stored.remind_at is not None and before.remind_at is not None and stored.remind_at < before.remind_at
    noted = outbox(rt.sessions, "answer_corrected")
    assert [s.recipient for s in noted] == [ANNA]
    assert noted[0].token == token and noted[0].message["Reply-To"] == f"bin+{token}@example.org"
    assert "urgentie: normaal → SPOED" in noted[0].body and "categorie: Inbraak → Verdachte situatie" in noted[0].body
    assert "nog niets besloten" in noted[0].body
    assert outbox(rt.sessions, "alert") == [] and outbox(rt.sessions, "answer_problem") == []
    assert [c[3] for c in _corrections(rt)] == ["ward_coordinator", "ward_coordinator"]

    clock.advance(minutes=2)
    reply(rt, sender=BERT, token=token_of(rt.sessions, BERT), body="AKKOORD")  # another coordinator decides
    stored = item(rt.sessions, item_id)
    assert (stored.status, stored.decided_by) == ("approved", BERT)
    alert = _alert(rt)
    assert (alert.urgency, alert.category) == ("urgent", "suspicious")
    assert len(_corrections(rt)) == 2  # the decision repeated nothing


@pytest.mark.parametrize(
    ("sender", "token", "headers"),
    [(CARLA, "valid", None),  # a coordinator, but of another ward
     (ANNA, "forged", None),  # the right coordinator, a token no request carried
     (ANNA, "valid", {"Authentication-Results":  # the right address and token, a forged From
                      "mx.example.org; spf=pass smtp.mailfrom=example.org; dkim=none; dmarc=fail "
                      "header.from=example.org"})],
    ids=["other-ward", "forged-token", "forged-from"],
)
def test_a_correction_alone_needs_the_same_right_as_a_decision(rt: Runtime, sender: str, token: str,
                                                               headers: dict[str, str] | None) -> None:
    item_id = hold_message(rt, report())
    used = token_of(rt.sessions) if token == "valid" else new_token()
    reply(rt, sender=sender, token=used, body="SPOED\nCATEGORIE fraude", headers=headers)
    stored = item(rt.sessions, item_id)
    assert (stored.status, stored.urgency, stored.category) == ("pending", "normal", "burglary")
    assert _corrections(rt) == [] and outbox(rt.sessions, "answer_corrected") == []
    assert [s.recipient for s in outbox(rt.sessions, "answer_refused")] == [sender]


def test_a_correction_alone_that_changes_nothing_says_so(rt: Runtime) -> None:
    item_id = hold_message(rt, report(), urgency="urgent")
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="SPOED")
    assert item(rt.sessions, item_id).status == "pending"
    body = outbox(rt.sessions, "answer_corrected")[0].body
    assert "urgentie: was al SPOED (niets veranderd)" in body
    assert _corrections(rt) == []


def test_a_correction_after_the_decision_is_too_late(rt: Runtime) -> None:
    item_id = hold_message(rt, report())
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="AKKOORD")
    reply(rt, sender=BERT, token=token_of(rt.sessions, BERT), body="SPOED")
    assert item(rt.sessions, item_id).urgency == "normal"
    assert [s.recipient for s in outbox(rt.sessions, "answer_already_decided")] == [BERT]
    assert _corrections(rt) == []


def test_queue_show_lists_the_corrections(rt: Runtime) -> None:
    item_id = hold_message(rt, report())
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="NIET SPOED\nCATEGORIE diefstal")
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="AKKOORD\nSPOED")
    out = io.StringIO()
    assert queue_show(rt, item_id, out) == 0
    text = out.getvalue()
    assert "corrections (the rules overruled):" in text
    assert "category: burglary -> theft  by ward_coordinator" in text
    assert "urgency: normal -> urgent  by ward_coordinator" in text
    assert "category:     theft" in text and "urgency:      urgent" in text
    section = text.split("corrections (the rules overruled):")[1].split("audit trail:")[0]
    assert "@" not in section  # who corrected is in the audit trail only


# ---------------------------------------------------------------- the monthly report


def test_the_report_counts_corrections_per_field_and_ward(rt: Runtime, clock: FrozenClock) -> None:
    hold_message(rt, report(subject="Een"))
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="AKKOORD\nSPOED\nCATEGORIE fraude")
    hold_message(rt, report(subject="Twee"), wards=("empel",))
    reply(rt, sender=KEES, token=token_of(rt.sessions, CARLA), body="AKKOORD\nSPOED")
    hold_message(rt, report(subject="Drie"))
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="AKKOORD")  # not corrected
    month = clock.now().strftime("%Y-%m")
    with rt.sessions() as session:
        numbers = build_report(session, month, ["maaspoort", "empel"])
    network, maaspoort, empel = numbers.wards[ALL], numbers.wards["maaspoort"], numbers.wards["empel"]
    assert (network.corrections["urgency"], network.corrections["category"]) == (2, 1)
    assert network.corrections["urgency/normal>urgent"] == 2 and network.corrections["category/burglary>fraud"] == 1
    assert (maaspoort.corrections["urgency"], empel.corrections["urgency"], empel.corrections["category"]) == (1, 1, 0)
    text = render_text(rt, numbers, "nl")
    assert "verbeterd door coördinatoren: urgentie 2 (normal → urgent 2), categorie 1 (burglary → fraud 1)" in text
    assert "corrected by coordinators: urgency 1 (normal → urgent 1)" in render_text(rt, numbers, "en")
    assert render_chart(rt, numbers, "nl")[:8] == b"\x89PNG\r\n\x1a\n"
    with rt.sessions() as session:
        next_month = build_report(session, "2027-01", ["maaspoort", "empel"])
    assert "verbeterd door coördinatoren: -" in render_text(rt, next_month, "nl")


# ---------------------------------------------------------------- concurrency, both backends


def test_a_correction_and_a_decision_at_once_agree(any_engine: Engine, clock: FrozenClock) -> None:
    """Whichever lands first, the alert and the stored corrections tell the same story."""
    rt = build_runtime(approval_config(), any_engine, clock)
    add_members(rt, [("a@example.net", "maaspoort")])

    def answer(barrier: threading.Barrier, who: str, body: str) -> None:
        barrier.wait()
        reply(rt, sender=who, token=token_of(rt.sessions, who), body=body)

    for round_number in range(3):
        item_id = hold_message(rt, report(subject=f"Ronde {round_number}"))
        barrier = threading.Barrier(2, timeout=30)
        run_in_threads([partial(answer, barrier, ANNA, "SPOED"), partial(answer, barrier, BERT, "AKKOORD")])
        stored = item(rt.sessions, item_id)
        with rt.sessions() as session:
            alert = session.scalars(select(Alert).where(Alert.queue_item_id == item_id)).one()
            corrected = list(session.scalars(select(Correction).where(Correction.queue_item_id == item_id)))
        assert stored.status == "approved" and alert.urgency == stored.urgency
        assert len(corrected) == (1 if stored.urgency == "urgent" else 0)
