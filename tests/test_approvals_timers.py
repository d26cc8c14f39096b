"""Reminders, escalation and expiry on a controlled clock, across restarts."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine

from relay.approvals.decide import Decision, decide
from relay.approvals.timers import run_due, schedule
from relay.config import ConfigError, parse_config
from relay.service.clock import FrozenClock
from relay.service.runtime import Runtime, build_runtime
from storage.models import AuditEvent, QueueItem
from tests.test_approvals_helpers import (
    ANNA,
    BERT,
    KEES,
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
    write_key,
)
from tests.test_approvals_helpers import any_engine as _shared_any_engine

any_engine = _shared_any_engine  # the fixture: a migrated database on each backend


def _recipients(rt: object, purpose: str) -> list[str]:
    return sorted(sent.recipient for sent in outbox(rt.sessions, purpose))  # type: ignore[attr-defined]


def test_nothing_is_due_before_its_time(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    hold_message(rt, report())
    clock.advance(minutes=239)
    assert run_due(rt) == 0
    assert _recipients(rt, "approval_reminder") == []


def test_reminder_is_sent_once_even_across_a_restart(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    clock.advance(minutes=240)
    assert run_due(rt) == 1
    assert _recipients(rt, "approval_reminder") == [ANNA, BERT]
    reminder = outbox(rt.sessions, "approval_reminder")[0]
    assert "Herinnering:" in reminder.subject and "wacht al 4 uur en 0 minuten" in reminder.body
    assert reminder.message["Reply-To"] == f"bin+{reminder.token}@example.org"
    assert run_due(rt) == 0
    restarted = build_runtime(approval_config(), engine, clock)  # a new process on the same database
    clock.advance(minutes=1)
    assert run_due(restarted) == 0
    assert len(outbox(rt.sessions, "approval_reminder")) == 2
    assert item(rt.sessions, item_id).reminded_at is not None


def test_a_due_reminder_survives_a_restart_before_it_ran(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    hold_message(rt, report())
    clock.advance(hours=5)  # the daemon was down when the reminder fell due
    assert run_due(build_runtime(approval_config(), engine, clock)) == 1
    assert _recipients(rt, "approval_reminder") == [ANNA, BERT]


def test_escalation_goes_to_network_wide_coordinators_then_expiry(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report(), urgency="urgent")
    clock.advance(minutes=30)
    assert run_due(rt) == 1
    clock.advance(minutes=30)
    assert run_due(rt) == 1
    assert _recipients(rt, "approval_escalation") == [ANNA, BERT, KEES]
    escalation = next(s for s in outbox(rt.sessions, "approval_escalation") if s.recipient == KEES)
    assert "Nog open:" in escalation.subject and "netwerkcoördinatoren" in escalation.body
    assert run_due(build_runtime(approval_config(), engine, clock)) == 0
    clock.advance(hours=47)
    assert run_due(rt) == 1
    stored = item(rt.sessions, item_id)
    assert stored.status == "expired"
    assert _recipients(rt, "approval_expired") == [ANNA, BERT, KEES]
    assert "Verlopen:" in outbox(rt.sessions, "approval_expired")[0].subject
    clock.advance(hours=1)
    assert run_due(rt) == 0
    actions = [action for actor, action, _ in audit_actions(rt.sessions) if actor == "system"]
    assert actions == ["held", "reminded", "escalated", "expired"]


def test_missed_reminder_and_escalation_send_only_the_escalation(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    hold_message(rt, report())
    clock.advance(hours=9)
    assert run_due(rt) == 1
    assert _recipients(rt, "approval_reminder") == []
    assert _recipients(rt, "approval_escalation") == [ANNA, BERT, KEES]
    clock.advance(hours=1)
    assert run_due(rt) == 0


def test_a_decided_item_is_neither_reminded_nor_expired(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    with rt.sessions() as session, session.begin():
        stored = session.get(QueueItem, item_id)
        assert stored is not None
        decide(rt, session, stored, Decision("reject"), actor=ANNA, now=clock.now())
    clock.advance(hours=100)
    assert run_due(rt) == 0
    assert item(rt.sessions, item_id).status == "rejected"


def test_with_a_token_key_reminders_repeat_the_same_token(engine: Engine, clock: FrozenClock, tmp_path: Path) -> None:
    config = parse_config(config_dict(approval={"token_key_file": str(write_key(tmp_path))}))
    rt = build_runtime(config, engine, clock)
    item_id = hold_message(rt, report())
    first = token_of(rt.sessions)
    clock.advance(hours=4)
    run_due(build_runtime(config, engine, clock))
    assert token_of(rt.sessions, purpose="approval_reminder") == first
    reply(rt, sender="someone@example.net", token=first)  # the original token still identifies the item
    assert item(rt.sessions, item_id).status == "pending"
    refusal = [d for _, a, d in audit_actions(rt.sessions) if a == "reply_refused"]
    assert refusal == [{"reason": "not_coordinator", "answered": True}]


def test_after_a_key_rotation_a_reminder_renews_the_token(engine: Engine, clock: FrozenClock, tmp_path: Path) -> None:
    key = write_key(tmp_path)
    config = parse_config(config_dict(approval={"token_key_file": str(key)}))
    rt = build_runtime(config, engine, clock)
    hold_message(rt, report())
    first = token_of(rt.sessions)
    key.write_text("the operator rotated the key\n", encoding="utf-8")
    clock.advance(hours=4)
    run_due(build_runtime(config, engine, clock))
    renewed = token_of(rt.sessions, purpose="approval_reminder")
    assert renewed != first
    reply(rt, sender="someone@example.net", token=first)
    refusal = [d for _, a, d in audit_actions(rt.sessions) if a == "reply_refused"]
    assert refusal == [{"reason": "unknown_token", "answered": True}]


def test_without_any_key_binrelay_does_not_start(engine: Engine, clock: FrozenClock) -> None:
    config = parse_config(config_dict(approval={"token_key_env": "BINRELAY_TEST_NO_SUCH_KEY", "token_key_auto": False}))
    with pytest.raises(ConfigError) as caught:
        build_runtime(config, engine, clock)
    assert "approval.token_key_env" in str(caught.value) and "no token key" in str(caught.value)


def test_a_generated_key_keeps_the_token_across_reminders(
    engine: Engine, clock: FrozenClock, tmp_path: Path
) -> None:
    config = parse_config(config_dict(
        database={"url": f"sqlite:///{tmp_path / 'binrelay.db'}"},
        approval={"token_key_auto": True, "token_key_env": "BINRELAY_TEST_NO_SUCH_KEY"},
    ))
    rt = build_runtime(config, engine, clock)
    hold_message(rt, report())
    first = token_of(rt.sessions)
    clock.advance(hours=4)
    run_due(rt)
    assert token_of(rt.sessions, purpose="approval_reminder") == first  # the original request still works
    key_file = tmp_path / "binrelay-token.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(key_file.read_text().strip()) == 64


def test_schedule_adds_one_coalescing_job(engine: Engine, clock: FrozenClock) -> None:
    from apscheduler.schedulers.background import BackgroundScheduler

    rt = build_runtime(approval_config(), engine, clock)
    scheduler = BackgroundScheduler(timezone="UTC")
    schedule(scheduler, rt)
    jobs = scheduler.get_jobs()
    assert len(jobs) == 1
    job = jobs[0]
    assert job.coalesce is True and job.max_instances == 1
    assert job.trigger.interval.total_seconds() == 30


def test_two_processes_running_timers_at_once_remind_once(any_engine: Engine, clock: FrozenClock) -> None:
    first, second = build_runtime(approval_config(), any_engine, clock), build_runtime(approval_config(), any_engine, clock)
    for number in range(4):
        hold_message(first, report(subject=f"Melding {number}"))
    clock.advance(hours=4)
    barrier = threading.Barrier(2, timeout=30)
    counts: list[int] = []

    def run(rt: Runtime) -> None:
        barrier.wait()
        counts.append(run_due(rt))

    run_in_threads([partial(run, rt) for rt in (first, second)])
    assert sum(counts) == 4
    assert len(outbox(first.sessions, "approval_reminder")) == 4 * 2


def test_derived_token_survives_the_database_round_trip(any_engine: Engine, tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    clock = FrozenClock(datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1))))
    config = parse_config(config_dict(approval={"token_key_file": str(write_key(tmp_path))}))
    rt = build_runtime(config, any_engine, clock)
    hold_message(rt, report())
    first = token_of(rt.sessions)
    clock.advance(hours=4)
    assert run_due(build_runtime(config, any_engine, clock)) == 1
    assert token_of(rt.sessions, purpose="approval_reminder") == first
    with rt.sessions() as session:
        assert [e.detail["token_renewed"] for e in session.query(AuditEvent).filter_by(action="reminded")] == [False]


def test_every_notice_renders_in_english(engine: Engine, clock: FrozenClock) -> None:
    from relay.service.tokens import new_token

    config = parse_config(config_dict(network={"language": "en"}))
    rt = build_runtime(config, engine, clock)
    rejected = hold_message(rt, report(subject="One"))
    hold_message(rt, report(subject="Two"), urgency="urgent")
    clock.advance(minutes=30)
    run_due(rt)
    clock.advance(minutes=30)
    run_due(rt)
    with rt.sessions() as session, session.begin():
        stored = session.get(QueueItem, rejected)
        assert stored is not None
        decide(rt, session, stored, Decision("reject", reason="known"), actor=ANNA, now=clock.now())
    reply(rt, sender="stranger@example.net", token=new_token())
    clock.advance(hours=48)
    run_due(rt)
    purposes = {sent.purpose for sent in outbox(rt.sessions)}
    assert purposes >= {"approval_request", "approval_reminder", "approval_escalation", "approval_decided",
                        "answer_rejected", "answer_received", "answer_refused", "approval_expired"}
    for sent in outbox(rt.sessions):
        assert sent.subject.strip()
        assert not any(word in sent.body for word in ("Er wacht", "besloten", "Bedankt", "verlopen", "Reden:")), (
            sent.purpose, sent.body)
