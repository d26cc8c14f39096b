"""Merged duplicates: five neighbours reporting one incident make one item.

A report that arrives within ``approval.merge_window_minutes`` of another
about the same category and an overlapping ward, with text at least
``approval.merge_similarity`` alike (``rules.similarity``: trigram cosine;
a window of 0 turns merging off),
joins that item instead of opening its own: the coordinators decide the
group once, from any of its requests, and approving sends one alert. A report
like one that was already approved becomes an update to the sent alert, for
the coordinators to pass on (threaded) or not.

However large a group grows (a fire seen by a whole street), a new report is
compared with the group's first report and its ``COMPARED_NEWEST`` newest
only, from the stored normalised text: the cost per message stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from relay.config import Config
from rules.similarity import similarity
from storage.models import ClassificationRecord, ItemKind, ItemStatus, Message, QueueItem
from storage.queue import merge_candidates, merged_into

MERGEABLE_KINDS = (ItemKind.REPORT, ItemKind.UNKNOWN_SENDER)
COMPARED_NEWEST = 8  # merged reports of a group a new one is compared with, besides the first


@dataclass(frozen=True)
class Duplicate:
    head: QueueItem  # the item the new report belongs with
    score: float

    @property
    def already_sent(self) -> bool:
        return self.head.status == ItemStatus.APPROVED and self.head.alert_id is not None


def find_duplicate(config: Config, session: Session, message: Message, cls: ClassificationRecord,
                   kind: str, now: datetime) -> Duplicate | None:
    """The earlier item this report repeats, if any (the most alike one)."""
    if kind not in MERGEABLE_KINDS or not cls.category or config.approval.merge_window_minutes == 0:
        return None
    text = report_text(message)
    if not text.strip():
        return None
    best: Duplicate | None = None
    for candidate in _candidates(config, session, message, cls, now):
        score = max((similarity(text, other) for other in group_texts(session, candidate)), default=0.0)
        if score >= config.approval.merge_similarity and (best is None or score > best.score):
            best = Duplicate(candidate, score)
    return best


def _candidates(config: Config, session: Session, message: Message, cls: ClassificationRecord,
                now: datetime) -> list[QueueItem]:
    since = now - timedelta(minutes=config.approval.merge_window_minutes)
    recent = merge_candidates(session, kinds=MERGEABLE_KINDS, category=cls.category, since=since,
                              other_than_message=message.id)
    wards = set(cls.wards or [])
    return [item for item in recent if _same_place(wards, set(item.proposed_wards or []))]


def _same_place(first: set[str], second: set[str]) -> bool:
    """Overlapping wards, or both without a ward."""
    return bool(first & second) if first and second else not first and not second


def group_of(session: Session, head: QueueItem, newest: int | None = None) -> list[QueueItem]:
    """The reports merged into ``head`` (the ``newest`` so many), oldest first (``head`` itself not included)."""
    return merged_into(session, head.id, newest)


def group_texts(session: Session, head: QueueItem) -> list[str]:
    """The texts a new report is compared with: the first report's and the newest merged ones'."""
    items = [head, *group_of(session, head, COMPARED_NEWEST)]
    return [report_text(item.message) for item in items if item.message is not None]


def head_of(session: Session, item: QueueItem | None) -> QueueItem | None:
    """A merged report is decided through the item it joined."""
    if item is None or item.merged_into_id is None:
        return item
    return session.get(QueueItem, item.merged_into_id) or item


def report_text(message: Message | None) -> str:
    """The words compared: the body (subjects are short and generic: "verdacht"),
    or the subject when there is no body."""
    if message is None:
        return ""
    return (message.body_text or "").strip() or (message.subject or "")
