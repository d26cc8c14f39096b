"""Coordinators' email answers to approval requests: every command and combination."""

from __future__ import annotations

import threading
from functools import partial

import pytest
from sqlalchemy import Engine, select

from relay.config import parse_config
from relay.service.clock import FrozenClock
from relay.service.runtime import Runtime, build_runtime
from storage.models import Alert, Member
from tests import mailgen
from tests.test_approvals_helpers import (
    ANNA,
    BERT,
    CARLA,
    KEES,
    MEMBER,
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



def _members(rt: Runtime) -> None:
    add_members(rt, [("a@example.net", "maaspoort"), ("b@example.net", "maaspoort"), ("c@example.net", "empel")])


@pytest.fixture
def rt(engine: Engine, clock: FrozenClock) -> Runtime:
    runtime = build_runtime(approval_config(), engine, clock)
    _members(runtime)
    return runtime


def _alert_recipients(rt: Runtime) -> list[str]:
    return sorted(sent.recipient for sent in outbox(rt.sessions, "alert"))


def _problem(rt: Runtime) -> str:
    problems = outbox(rt.sessions, "answer_problem")
    assert len(problems) == 1
    return problems[0].body


@pytest.mark.parametrize("word", ["AKKOORD", "akkoord", "OK", "Ja", "APPROVE", "yes"])
def test_approve_words_publish_to_the_proposed_wards(rt: Runtime, word: str) -> None:
    item_id = hold_message(rt, report())
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body=f"{word}\n\nMet groet,\nAnna")
    stored = item(rt.sessions, item_id)
    assert stored.status == "approved" and stored.decided_by == ANNA and stored.token_used_at is not None
    assert _alert_recipients(rt) == ["a@example.net", "b@example.net"]
    assert [s.recipient for s in outbox(rt.sessions, "answer_confirmed")] == [ANNA]
    assert [s.recipient for s in outbox(rt.sessions, "approval_decided")] == [BERT]
    assert (ANNA, "approved") in [(a, b) for a, b, _ in audit_actions(rt.sessions)]


@pytest.mark.parametrize("body", ["AFWIJZEN dit is al bekend", "NEE dit is al bekend", "reject dit is al bekend"])
def test_reject_with_reason_tells_the_resident(rt: Runtime, body: str) -> None:
    item_id = hold_message(rt, report())
    reply(rt, sender=BERT, token=token_of(rt.sessions, BERT), body=body)
    stored = item(rt.sessions, item_id)
    assert stored.status == "rejected" and stored.reason == "dit is al bekend"
    assert _alert_recipients(rt) == []
    answer = outbox(rt.sessions, "answer_rejected")
    assert [s.recipient for s in answer] == [MEMBER] and "dit is al bekend" in answer[0].body


def test_edit_forwards_the_new_text(rt: Runtime) -> None:
    item_id = hold_message(rt, report(body="Ingebroken bij Marathonloop 12, de dader woont op nummer 14!"))
    reply(rt, sender=ANNA, token=token_of(rt.sessions),
          body="WIJZIG\nVannacht is ingebroken in een schuur aan de Marathonloop.\n\nAnna")
    stored = item(rt.sessions, item_id)
    assert stored.status == "approved" and stored.edited_text is not None
    assert stored.edited_text.startswith("Vannacht is ingebroken in een schuur aan de Marathonloop.")
    with rt.sessions() as session:
        body = session.scalars(select(Alert)).one().body or ""
    assert "nummer 14" not in body and "Marathonloop" in body


def test_ward_line_changes_the_target(rt: Runtime) -> None:
    item_id = hold_message(rt, report())
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="AKKOORD\nWIJK Empel")
    assert item(rt.sessions, item_id).target_wards == ["empel"]
    assert _alert_recipients(rt) == ["c@example.net"]


def test_police_line_also_passes_it_to_the_police(rt: Runtime) -> None:
    item_id = hold_message(rt, report())
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="AKKOORD\nPOLITIE")
    assert item(rt.sessions, item_id).partners == ["police"]
    assert _alert_recipients(rt) == ["a@example.net", "b@example.net"]
    assert [s.recipient for s in outbox(rt.sessions, "partner_forward")] == ["wijkagent@politie.nl"]


def test_police_alone_is_partner_only(rt: Runtime) -> None:
    item_id = hold_message(rt, report())
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="POLITIE")
    stored = item(rt.sessions, item_id)
    assert stored.status == "approved" and stored.target_wards == [] and stored.partners == ["police"]
    assert _alert_recipients(rt) == []
    assert [s.recipient for s in outbox(rt.sessions, "partner_forward")] == ["wijkagent@politie.nl"]


def test_reject_with_police_passes_it_to_the_police_only(rt: Runtime) -> None:
    item_id = hold_message(rt, report())
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="AFWIJZEN niet voor de buurt\nPOLITIE")
    stored = item(rt.sessions, item_id)
    assert stored.target_wards == [] and stored.partners == ["police"] and stored.reason == "niet voor de buurt"
    assert _alert_recipients(rt) == []
    assert len(outbox(rt.sessions, "partner_forward")) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("AKKOORD\nWIJK Atlantis", "Atlantis"),
        ("misschien morgen", ""),
        ("AKKOORD\nGEMEENTE", "gemeente"),
        ("WIJZIG", "WIJZIG"),
    ],
    ids=["unknown-ward", "unknown-word", "partner-without-address", "edit-without-text"],
)
def test_problems_ask_again_and_change_nothing(rt: Runtime, body: str, expected: str) -> None:
    item_id = hold_message(rt, report())
    token = token_of(rt.sessions)
    reply(rt, sender=ANNA, token=token, body=body)
    stored = item(rt.sessions, item_id)
    assert stored.status == "pending" and stored.token_used_at is None
    assert _alert_recipients(rt) == [] and outbox(rt.sessions, "answer_refused") == []
    problem = outbox(rt.sessions, "answer_problem")[0]
    assert expected in problem.body
    assert problem.token == token and problem.message["Reply-To"] == f"bin+{token}@example.org"
    assert "reply_not_understood" in [action for _, action, _ in audit_actions(rt.sessions)]
    reply(rt, sender=ANNA, token=token, body="AKKOORD", subject=f"Re: {problem.subject}")
    assert item(rt.sessions, item_id).status == "approved"


def test_network_wide_coordinator_may_decide_any_ward(rt: Runtime) -> None:
    item_id = hold_message(rt, report())
    reply(rt, sender=KEES, token=token_of(rt.sessions), body="OK")
    assert item(rt.sessions, item_id).decided_by == KEES
    assert sorted(s.recipient for s in outbox(rt.sessions, "approval_decided")) == [ANNA, BERT]


def test_token_in_the_subject_alone_or_the_address_alone_is_enough(rt: Runtime) -> None:
    first = hold_message(rt, report(subject="Een"))
    second = hold_message(rt, report(subject="Twee"))
    first_token = next(s.token for s in outbox(rt.sessions, "approval_request") if "Een" in s.subject)
    second_token = next(s.token for s in outbox(rt.sessions, "approval_request") if "Twee" in s.subject)
    reply(rt, sender=ANNA, token=first_token, to="bin@example.org")
    reply(rt, sender=ANNA, token=second_token, subject="Re: Inbraak")
    assert item(rt.sessions, first).status == item(rt.sessions, second).status == "approved"


def test_outlook_html_reply_above_the_quoted_request(rt: Runtime) -> None:
    item_id = hold_message(rt, report())
    token = token_of(rt.sessions)
    quoted = ("AFWIJZEN staat al op Facebook\n\nVan: BIN Test\nVerzonden: maandag\nOnderwerp: [BIN-x]\n\n"
              "Antwoord met een van deze woorden: AKKOORD")
    raw = mailgen.message(f"Antw: [BIN-{token}] Inbraak", quoted, sender=ANNA, to=f"bin+{token}@example.org",
                          html=True, message_id="outlook1@example.org")
    from mail.message import parse_mail
    from relay.approvals.answers import handle_reply
    from tests.test_approvals_helpers import store

    with rt.sessions() as session, session.begin():
        message = store(rt, session, raw, source="coordinator", kind="command", command="decision",
                        category=None, wards=())
        assert message.classification is not None
        handle_reply(rt, session, message, parse_mail(raw), message.classification)
    stored = item(rt.sessions, item_id)
    assert stored.status == "rejected" and stored.reason == "staat al op Facebook"


def test_second_answer_gets_already_decided(rt: Runtime, clock: FrozenClock) -> None:
    item_id = hold_message(rt, report())
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="AKKOORD")
    clock.advance(minutes=3)
    reply(rt, sender=BERT, token=token_of(rt.sessions, BERT), body="AFWIJZEN")
    assert item(rt.sessions, item_id).status == "approved"
    late = outbox(rt.sessions, "answer_already_decided")
    assert [s.recipient for s in late] == [BERT] and ANNA in late[0].body
    assert len(outbox(rt.sessions, "alert")) == 2  # published once


def test_english_network_reads_english_commands(engine: Engine, clock: FrozenClock) -> None:
    config = parse_config(config_dict(network={"language": "en"}))
    rt = build_runtime(config, engine, clock)
    _members(rt)
    item_id = hold_message(rt, report())
    reply(rt, sender=ANNA, token=token_of(rt.sessions), body="APPROVE\nWARD Empel, Maaspoort\nPOLICE")
    stored = item(rt.sessions, item_id)
    assert stored.target_wards == ["empel", "maaspoort"] and stored.partners == ["police"]
    assert "Your decision has been carried out" in outbox(rt.sessions, "answer_confirmed")[0].body


def test_carla_of_empel_may_not_decide_for_maaspoort(rt: Runtime) -> None:
    item_id = hold_message(rt, report())
    reply(rt, sender=CARLA, token=token_of(rt.sessions), body="AKKOORD")
    assert item(rt.sessions, item_id).status == "pending"
    assert _alert_recipients(rt) == []


# ---------------------------------------------------------------- concurrency, both backends


def _answer_together(rt: Runtime, answers: dict[str, tuple[str, str]]) -> None:
    """Each coordinator's reply (token, body) handled in its own thread at the same moment."""
    barrier = threading.Barrier(len(answers), timeout=30)

    def answer(who: str) -> None:
        barrier.wait()
        token, body = answers[who]
        reply(rt, sender=who, token=token, body=body)

    run_in_threads([partial(answer, who) for who in answers])


def test_two_replies_at_once_publish_once(any_engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), any_engine, clock)
    _members(rt)
    for round_number in range(3):
        item_id = hold_message(rt, report(subject=f"Ronde {round_number}"))
        _answer_together(rt, {ANNA: (token_of(rt.sessions, ANNA), "AKKOORD"),
                              BERT: (token_of(rt.sessions, BERT), "AFWIJZEN nee")})
        stored = item(rt.sessions, item_id)
        assert stored.status == ("approved" if stored.decided_by == ANNA else "rejected")
        loser = BERT if stored.decided_by == ANNA else ANNA
        late = [s.recipient for s in outbox(rt.sessions, "answer_already_decided")]
        assert len(late) == round_number + 1 and late[-1] == loser
    with rt.sessions() as session:
        alerts = list(session.scalars(select(Alert)))
    assert len({a.queue_item_id for a in alerts}) == len(alerts)  # never two alerts for one item


# ---------------------------------------------------------------- the whole flow with the real rules


def test_report_to_alert_through_the_pipeline_with_the_real_rules(engine: Engine, clock: FrozenClock) -> None:
    """Ingest stores, the pipeline classifies and routes, a coordinator's phone reply decides."""
    from relay.ingest.store import Ingestor
    from relay.routing.pipeline import route_pending

    rt = build_runtime(approval_config(), engine, clock)
    _members(rt)
    with rt.sessions() as session, session.begin():
        session.add(Member(email=MEMBER, ward="maaspoort", status="active", unsubscribe_token="u-jan",
                           joined_at=clock.now()))
    ingest = Ingestor(rt.sessions, clock, rt.config.limits.max_message_bytes)
    raw = mailgen.message("Inbraak in schuur Marathonloop",
                          "Vannacht is er ingebroken in de schuur van de buren aan de Marathonloop.",
                          sender=f"Jan de Vries <{MEMBER}>", message_id="flow-report@example.net")
    ingest.store(raw, origin="test", origin_ref=None)
    assert route_pending(rt).routed == 1
    requests = outbox(rt.sessions, "approval_request")
    assert sorted(s.recipient for s in requests) == [ANNA, BERT]
    request = requests[0]
    token = request.token
    assert token is not None and "Maaspoort" in request.subject

    answer = mailgen.message(
        f"Re: {request.subject}", "Akkoord\n\nVerzonden vanaf mijn iPhone\n\n> Er wacht een bericht op uw besluit.",
        sender=f"Anna <{ANNA}>", to=f"bin+{token}@example.org", message_id="flow-answer@example.org",
        headers={"In-Reply-To": str(request.message["Message-ID"])},
    )
    clock.advance(minutes=7)
    ingest.store(answer, origin="test", origin_ref=None)
    assert route_pending(rt).routed == 1
    with rt.sessions() as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.wards == ["maaspoort"]
    assert _alert_recipients(rt) == ["a@example.net", "b@example.net", MEMBER]
    assert [s.recipient for s in outbox(rt.sessions, "answer_confirmed")] == [ANNA]
    assert [s.recipient for s in outbox(rt.sessions, "approval_decided")] == [BERT]
