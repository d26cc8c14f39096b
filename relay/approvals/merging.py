"""Merged duplicates: five neighbours reporting one incident make one item.

A report that arrives within ``approval.merge_window_minutes`` of another
about the same category and an overlapping ward, with text at least
``approval.merge_similarity`` alike (``rules.similarity``: trigram cosine;
a window of 0 turns merging off),
joins that item instead of opening its own: the coordinators decide the
group once, from any of its requests, and approving sends one alert. A report
like one that was already approved becomes an update to the sent alert, for
the coordinators to pass on (threaded) or not.

Each held report's trigram counts are stored with its message when it is
first compared (its signature), and the report is entered in the duplicate
index under its category and wards (``storage.queue.add_duplicate_keys``). A
new report is compared with the ``COMPARED_NEWEST`` newest reports the index
gives for its category, wards and window, from their stored signatures: its
cost does not grow with the queue, however large a group or a backlog gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from relay.config import Config
from rules.similarity import Signature, alike, signature
from storage.models import ClassificationRecord, ItemKind, ItemStatus, Message, QueueItem
from storage.queue import add_duplicate_keys, duplicate_candidates, merged_into

MERGEABLE_KINDS = (ItemKind.REPORT, ItemKind.UNKNOWN_SENDER)
# Earlier reports (of any group) a new one is compared with: the newest in its category, wards and window.
COMPARED_NEWEST = 20


@dataclass(frozen=True)
class Duplicate:
    head: QueueItem  # the item the new report belongs with
    score: float

    @property
    def already_sent(self) -> bool:
        return self.head.status == ItemStatus.APPROVED and self.head.alert_id is not None


def merging_on(config: Config, cls: ClassificationRecord, kind: str) -> bool:
    return kind in MERGEABLE_KINDS and bool(cls.category) and config.approval.merge_window_minutes > 0


def find_duplicate(config: Config, session: Session, message: Message, cls: ClassificationRecord,
                   kind: str, now: datetime) -> Duplicate | None:
    """The earlier item this report repeats, if any (the most alike one)."""
    if not merging_on(config, cls, kind) or cls.category is None:
        return None
    mine = report_signature(message)
    if not mine:
        return None
    since = now - timedelta(minutes=config.approval.merge_window_minutes)
    scores: dict[int, float] = {}
    for candidate in duplicate_candidates(session, heads_of_kinds=MERGEABLE_KINDS, category=cls.category,
                                          wards=place_keys(cls.wards), since=since, limit=COMPARED_NEWEST):
        score = alike(mine, candidate.signature)
        if score >= config.approval.merge_similarity and score > scores.get(candidate.head_id, 0.0):
            scores[candidate.head_id] = score
    if not scores:
        return None
    head_id = max(scores, key=lambda key: (scores[key], key))
    head = session.get(QueueItem, head_id)
    return Duplicate(head, scores[head_id]) if head is not None else None


def remember_report(session: Session, message: Message, cls: ClassificationRecord, head: QueueItem,
                    now: datetime) -> None:
    """Enter a held report in the duplicate index, under the item a repeat of it would join
    (its own, or the one it was merged into or is an update of)."""
    if cls.category is None or not report_signature(message):
        return
    add_duplicate_keys(session, head_id=head.id, message_id=message.id, category=cls.category,
                       wards=place_keys(head.proposed_wards), now=now)


def place_keys(wards: list[str] | None) -> list[str]:
    """The index's places: each ward, or ``""`` for a report without one (it matches only those)."""
    return sorted(set(wards or [])) or [""]


def report_signature(message: Message) -> Signature:
    """The message's stored signature, made (once) from its text when it has none yet."""
    if message.signature is None:
        message.signature = signature(report_text(message))
    return message.signature


def group_of(session: Session, head: QueueItem, newest: int | None = None) -> list[QueueItem]:
    """The reports merged into ``head`` (the ``newest`` so many), oldest first (``head`` itself not included)."""
    return merged_into(session, head.id, newest)


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
