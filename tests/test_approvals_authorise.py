"""Only a coordinator of the item's ward, with the item's unused token, can decide it.

Every refusal changes nothing, is audited, and is answered once at most.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from relay.approvals.decide import Decision, decide
from relay.service.clock import FrozenClock
from relay.service.runtime import build_runtime
from relay.service.tokens import new_token
from storage.models import QueueItem
from tests.test_approvals_helpers import (
    ANNA,
    CARLA,
    MEMBER,
    NETWORK,
    approval_config,
    audit_actions,
    hold_message,
    item,
    outbox,
    reply,
    report,
    token_of,
)


def _refusals(rt: object) -> list[dict[str, object]]:
    return [detail for _, action, detail in audit_actions(rt.sessions) if action == "reply_refused"]  # type: ignore[attr-defined]


def _assert_unchanged(rt: object, item_id: int) -> None:
    stored = item(rt.sessions, item_id)  # type: ignore[attr-defined]
    assert stored.status == "pending" and stored.token_used_at is None and stored.decided_by is None


@pytest.mark.parametrize(
    ("sender", "reason"),
    [(MEMBER, "not_coordinator"), (CARLA, "not_coordinator")],
    ids=["member", "coordinator-of-another-ward"],
)
def test_who_may_not_decide_is_refused_once(engine: Engine, clock: FrozenClock, sender: str, reason: str) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    token = token_of(rt.sessions)
    reply(rt, sender=sender, token=token)
    _assert_unchanged(rt, item_id)
    answers = outbox(rt.sessions, "answer_refused")
    assert [sent.recipient for sent in answers] == [sender]
    assert "Alleen een coördinator" in answers[0].body
    assert answers[0].message["Auto-Submitted"] == "auto-replied"
    assert _refusals(rt) == [{"reason": reason, "answered": True}]


def test_forged_token_is_refused(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    reply(rt, sender=ANNA, token=new_token())
    _assert_unchanged(rt, item_id)
    assert _refusals(rt) == [{"reason": "unknown_token", "answered": True}]
    assert "hoort bij geen enkel verzoek" in outbox(rt.sessions, "answer_refused")[0].body


def test_reply_without_any_token_is_refused(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    reply(rt, sender=ANNA, token=None, subject="Re: Inbraak")
    _assert_unchanged(rt, item_id)
    assert _refusals(rt) == [{"reason": "unknown_token", "answered": True}]


def test_expired_token_is_refused(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    token = token_of(rt.sessions)
    clock.advance(hours=48, seconds=1)
    reply(rt, sender=ANNA, token=token)
    _assert_unchanged(rt, item_id)
    assert _refusals(rt) == [{"reason": "expired", "answered": True}]


@pytest.mark.parametrize(
    "results",
    [
        "mx.example.org; spf=pass smtp.mailfrom=example.org; dkim=none; dmarc=fail header.from=example.org",
        "mx.example.org; spf=fail smtp.mailfrom=anna@example.org",
    ],
    ids=["dmarc", "spf"],
)
def test_failed_authentication_is_refused(engine: Engine, clock: FrozenClock, results: str) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    reply(rt, sender=ANNA, token=token_of(rt.sessions), headers={"Authentication-Results": results})
    _assert_unchanged(rt, item_id)
    assert _refusals(rt) == [{"reason": "auth_failed", "answered": True}]
    assert "SPF/DMARC" in outbox(rt.sessions, "answer_refused")[0].body


def test_reused_token_by_someone_else_is_refused(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    token = token_of(rt.sessions)
    with rt.sessions() as session, session.begin():
        stored = session.get(QueueItem, item_id)
        assert stored is not None
        assert decide(rt, session, stored, Decision("reject", reason="al bekend"), actor=ANNA, now=clock.now())
    reply(rt, sender=MEMBER, token=token)
    assert item(rt.sessions, item_id).decided_by == ANNA
    assert _refusals(rt) == [{"reason": "not_coordinator", "answered": True}]


def test_late_coordinator_hears_who_decided(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    token = token_of(rt.sessions)
    with rt.sessions() as session, session.begin():
        stored = session.get(QueueItem, item_id)
        assert stored is not None
        decide(rt, session, stored, Decision("reject", reason="al bekend"), actor=ANNA, now=clock.now())
    clock.advance(minutes=5)
    reply(rt, sender="bert@example.org", token=token)
    stored_item = item(rt.sessions, item_id)
    assert stored_item.status == "rejected" and stored_item.decided_by == ANNA
    late = outbox(rt.sessions, "answer_already_decided")
    assert [sent.recipient for sent in late] == ["bert@example.org"]
    assert f"al besloten door {ANNA} om" in " ".join(late[0].body.split())
    assert ("bert@example.org", "reply_too_late") in [(a, b) for a, b, _ in audit_actions(rt.sessions)]


def test_refusals_to_one_address_are_rate_limited(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    hold_message(rt, report())
    for _ in range(6):
        clock.advance(minutes=1)
        reply(rt, sender=MEMBER, token=new_token())
    assert len(outbox(rt.sessions, "answer_refused")) == 3
    refusals = _refusals(rt)
    assert len(refusals) == 6 and [r["answered"] for r in refusals] == [True] * 3 + [False] * 3
    clock.advance(days=1, minutes=10)
    reply(rt, sender=MEMBER, token=new_token())
    assert len(outbox(rt.sessions, "answer_refused")) == 4


def test_automatic_replies_and_our_own_address_get_no_answer(engine: Engine, clock: FrozenClock) -> None:
    rt = build_runtime(approval_config(), engine, clock)
    item_id = hold_message(rt, report())
    token = token_of(rt.sessions)
    reply(rt, sender=MEMBER, token=token, headers={"Auto-Submitted": "auto-replied"})
    reply(rt, sender=NETWORK, token=token)
    _assert_unchanged(rt, item_id)
    assert outbox(rt.sessions, "answer_refused") == []
    assert [r["answered"] for r in _refusals(rt)] == [False, False]


def test_a_fail_about_another_domain_does_not_count() -> None:
    from mail.message import parse_mail
    from rules.sender import Assurance, Trust, identify
    from tests import mailgen

    raw = mailgen.message("x", "y", sender=ANNA, headers={
        "Authentication-Results": "mx.example.org; spf=fail smtp.mailfrom=bounces@forwarder.example; "
                                  "dmarc=pass header.from=example.org",
    })
    assert identify(parse_mail(raw), Trust((), "example.org")).assurance == Assurance.AUTHENTICATED
