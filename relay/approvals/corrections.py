"""A coordinator overruling the rules' judgement: ``SPOED``/``NIET SPOED`` and ``CATEGORIE naam``.

With a decision, the correction is applied as soon as the decision is claimed
and before it is carried out, so an approved alert goes out with the corrected
category label and SPOED marking (and reaches the members who want only
urgent alerts). Without a decision, the correction changes the pending item:
the coordinator hears what was noted and that the item still waits for a
decision (the token stays valid), and the reminder and escalation follow the
new urgency.

Every change is stored (``storage.corrections``) with the role that made it,
for the monthly report, and audited with the address. A correction to what
the item already is ("SPOED" on an urgent item) changes and stores nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from relay.approvals.requests import timers_for
from relay.config import Config
from relay.service import texts
from rules.loader import RuleSet
from storage import audit
from storage.corrections import correct_pending, record_correction, set_judgement
from storage.models import CorrectionField, ItemStatus, QueueItem

# A pending item corrected by two coordinators at once: the compare-and-set is tried again this often.
PENDING_ATTEMPTS = 3
FIELD_LABELS = {
    "nl": {CorrectionField.URGENCY: "urgentie", CorrectionField.CATEGORY: "categorie"},
    "en": {CorrectionField.URGENCY: "urgency", CorrectionField.CATEGORY: "category"},
}
NOT_URGENT = frozenset({"normal", "low"})


@dataclass(frozen=True)
class Corrections:
    """What a reply corrects: the urgency ("urgent" | "normal") and the category id, when given."""

    urgency: str | None = None
    category: str | None = None

    def wanted(self) -> list[tuple[CorrectionField, str]]:
        asked = [(CorrectionField.URGENCY, self.urgency), (CorrectionField.CATEGORY, self.category)]
        return [(field, value) for field, value in asked if value is not None]


@dataclass(frozen=True)
class Change:
    field: CorrectionField
    old: str | None
    new: str


def role_of(config: Config, actor: str, item: QueueItem) -> str:
    """The role a correction is stored with: never the address (the audit trail keeps that)."""
    if actor.startswith("operator:"):
        return "operator"
    address = actor.lower()
    if any(address in config.coordinators_of(slug) for slug in item.proposed_wards or []):
        return "ward_coordinator"
    return "network_coordinator" if address in config.network.coordinators else "coordinator"


def corrected_value(item: QueueItem, field: CorrectionField, wanted: str) -> str:
    """What the field becomes: NIET SPOED keeps a low urgency low (it is not urgent either)."""
    if field == CorrectionField.URGENCY and wanted == "normal" and item.urgency in NOT_URGENT:
        return item.urgency
    return wanted


def apply_to_claimed(config: Config, session: Session, item: QueueItem, corrections: Corrections, *,
                     actor: str, now: datetime, message_id: int | None) -> list[Change]:
    """Correct an item this caller has just decided (claimed), before the decision is carried out."""
    changes = []
    for field, wanted in corrections.wanted():
        old = _current(item, field)
        new = corrected_value(item, field, wanted)
        if new == old:
            continue
        set_judgement(session, item, field, new)
        change = Change(field, old, new)
        _store(config, session, item, change, actor=actor, now=now, message_id=message_id, pending=False)
        changes.append(change)
    return changes


def apply_to_pending(config: Config, session: Session, item: QueueItem, corrections: Corrections, *,
                     actor: str, now: datetime, message_id: int | None) -> list[Change] | None:
    """Correct a pending item without deciding it; None when it was decided meanwhile."""
    changes = []
    for field, wanted in corrections.wanted():
        for _attempt in range(PENDING_ATTEMPTS):
            old = _current(item, field)
            new = corrected_value(item, field, wanted)
            if new == old:
                break
            if correct_pending(session, item.id, field, old, new, **_timers_after(config, item, field, new)):
                change = Change(field, old, new)
                _store(config, session, item, change, actor=actor, now=now, message_id=message_id, pending=True)
                changes.append(change)
                break
            session.refresh(item)
            if item.status != ItemStatus.PENDING or item.token_used_at is not None:
                return None
    return changes


def _current(item: QueueItem, field: CorrectionField) -> str | None:
    return item.urgency if field == CorrectionField.URGENCY else item.category


def _timers_after(config: Config, item: QueueItem, field: CorrectionField, new: str) -> dict[str, Any]:
    """A pending item that becomes urgent is reminded and escalated on the urgent schedule (and vice versa)."""
    if field != CorrectionField.URGENCY:
        return {}
    due = timers_for(config, new, item.created_at)
    timers: dict[str, Any] = {}
    if item.remind_at is not None and item.reminded_at is None:
        timers["remind_at"] = due["remind_at"]
    if item.escalate_at is not None and item.escalated_at is None:
        timers["escalate_at"] = due["escalate_at"]
    return timers


def _store(config: Config, session: Session, item: QueueItem, change: Change, *, actor: str, now: datetime,
           message_id: int | None, pending: bool) -> None:
    role = role_of(config, actor, item)
    record_correction(session, item_id=item.id, field=change.field, old=change.old, new=change.new, role=role,
                      wards=item.proposed_wards or [], at=now)
    audit.record(session, at=now, actor=actor, action="corrected", queue_item_id=item.id, message_id=message_id,
                 field=change.field.value, old=change.old, new=change.new, role=role, pending=pending)


# ---------------------------------------------------------------- how messages show them


def shown_value(rules: RuleSet, field: str, value: str | None, language: str) -> str:
    """A stored value as people read it: "SPOED", "Oplichting"."""
    if field == CorrectionField.URGENCY:
        return texts.URGENCY_LABELS[language].get(value or "normal", value or "-")
    return texts.category_label(rules, value, language)


def change_lines(rules: RuleSet, changes: list[Change], language: str) -> list[str]:
    """ "urgentie: normaal → SPOED", one line per change."""
    return [f"{FIELD_LABELS[language][change.field]}: {shown_value(rules, change.field, change.old, language)}"
            f" → {shown_value(rules, change.field, change.new, language)}" for change in changes]


def unchanged_lines(rules: RuleSet, item: QueueItem, corrections: Corrections, changes: list[Change],
                    language: str) -> list[str]:
    """ "urgentie: was al SPOED", for what was asked but already so."""
    changed = {change.field for change in changes}
    already = "was al" if language == "nl" else "already"
    return [f"{FIELD_LABELS[language][field]}: {already} {shown_value(rules, field, _current(item, field), language)}"
            for field, _wanted in corrections.wanted() if field not in changed]
