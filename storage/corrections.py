"""Corrections of a queue item's urgency or category, and the record of each. They never commit.

A correction with a decision is applied after the decision's claim, when the
row is the caller's alone (``set_judgement``). A correction without a decision
changes a pending item, so it is one compare-and-set UPDATE
(``correct_pending``): it changes the row only while the item is still pending
and still holds the value the caller read, so the stored "from" is exact even
when two coordinators answer at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from storage.models import Correction, CorrectionField, ItemStatus, QueueItem

COLUMNS = {CorrectionField.URGENCY: QueueItem.urgency, CorrectionField.CATEGORY: QueueItem.category}


def set_judgement(session: Session, item: QueueItem, field: str, value: str) -> None:
    """Set the urgency or category of an item the caller has just claimed."""
    setattr(item, COLUMNS[CorrectionField(field)].key, value)
    session.flush()


def correct_pending(session: Session, item_id: int, field: str, old: str | None, new: str,
                    **also: Any) -> bool:
    """Change a pending item's urgency or category from ``old`` to ``new`` (and the columns in ``also``);
    False when it was decided or changed meanwhile."""
    column = COLUMNS[CorrectionField(field)]
    statement = (
        update(QueueItem)
        .where(QueueItem.id == item_id, QueueItem.status == ItemStatus.PENDING, QueueItem.token_used_at.is_(None),
               column.is_(None) if old is None else column == old)
        .values({column.key: new, **also})
        .execution_options(synchronize_session=False)
    )
    result = session.execute(statement)
    assert isinstance(result, CursorResult)
    changed = result.rowcount == 1
    if changed:
        item = session.get(QueueItem, item_id)
        if item is not None:
            session.refresh(item)
    return changed


def record_correction(session: Session, *, item_id: int, field: str, old: str | None, new: str, role: str,
                      wards: Sequence[str], at: datetime) -> Correction:
    correction = Correction(queue_item_id=item_id, field=CorrectionField(field).value, old_value=old,
                            new_value=new, role=role, wards=sorted(wards), at=at)
    session.add(correction)
    session.flush()
    return correction


def corrections_for_item(session: Session, item_id: int) -> list[Correction]:
    query = select(Correction).where(Correction.queue_item_id == item_id).order_by(Correction.at, Correction.id)
    return list(session.scalars(query))
