"""Where a word stands: the clause around it and a negation before it.

A keyword means little without its context. "Is er spoed, bel dan 112" is
advice, not an emergency; "de buurman belde direct 112" tells what happened
then; "er is niet ingebroken" denies a burglary; in "het bericht luidt: 'uw
rekening wordt geblokkeerd'" the scam's words are quoted, not ours. This
module reads a folded text into clauses, each with its scopes, and finds the
negation that governs a word. The classifier (``rules.engine``) and the text
model's features (``rules.model``) both ask it; the word lists are in
``defaults/context.toml``.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import NamedTuple

from mail.text import fold


class Scope(StrEnum):
    NOW = "now"  # what is going on: "nu", "op dit moment", "zojuist"
    PAST = "past"  # told afterwards: "belde", "gisteravond", "vorige week"
    CONDITIONAL = "conditional"  # "als u iets ziet", "is er spoed", "bij verdachte situaties"
    INSTRUCTION = "instruction"  # advice and calls to action: "bel 112", "sluit uw deur", "meld het"
    QUOTED = "quoted"  # someone else's words: a scam text, a quoted message


def not_now(scopes: frozenset[Scope]) -> Scope | None:
    """The scope that makes a sentence say nothing about now: a quote always (a scam's "klik nu" is the
    scam's); advice, a condition or the past unless the sentence itself says it is going on now."""
    if Scope.QUOTED in scopes:
        return Scope.QUOTED
    if Scope.NOW in scopes:
        return None
    return next((scope for scope in (Scope.CONDITIONAL, Scope.INSTRUCTION, Scope.PAST) if scope in scopes), None)

_SENTENCE_END = re.compile(r"[.!?;]+(?=\s|$)")
# A line shorter than this ends its sentence even without a full stop (a heading, a list item).
SHORT_LINE = 50
_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*")
# „…“, "…", “…”, '…' of at least four words: another's words.
_QUOTATION = re.compile(r"[\"“„«](?:[^\"“”„«»\n]{12,600})[\"”“»]|(?<!\w)'(?:[^'\n]{16,400})'(?!\w)")


@dataclass(frozen=True)
class Vocabulary:
    """The words that set scopes and negate, from ``defaults/context.toml``."""

    negators: frozenset[str]
    negation_window: int
    # Words that may sit between a negator and what it negates without ending it ("geen enkele link").
    negation_bridges: frozenset[str]
    now: tuple[str, ...]
    past_words: frozenset[str]
    past_phrases: tuple[str, ...]
    conditional_starts: tuple[str, ...]
    instruction_starts: tuple[str, ...]
    instruction_phrases: tuple[str, ...]
    quote_introducers: tuple[str, ...]


@dataclass(frozen=True)
class Clause:
    start: int
    end: int  # exclusive
    scopes: frozenset[Scope]
    why: str  # the words that set the first scope, for explanations


class Context:
    """The clauses of one folded text; ask ``scopes_at`` and ``negation_before`` by position."""

    def __init__(self, folded: str, vocabulary: Vocabulary) -> None:
        self.text = folded
        self.vocabulary = vocabulary
        self.clauses = _clauses(folded, vocabulary)
        self._starts = [clause.start for clause in self.clauses]
        self._words = [(match.start(), match.end(), match.group()) for match in _WORD.finditer(folded)]
        self._word_starts = [start for start, _end, _word in self._words]
        self._negator_starts = [start for start, _end, word in self._words if word in vocabulary.negators]

    def clause_at(self, position: int) -> Clause | None:
        index = bisect.bisect_right(self._starts, position) - 1
        if index >= 0 and self.clauses[index].start <= position < self.clauses[index].end:
            return self.clauses[index]
        return None

    def scopes_at(self, position: int) -> frozenset[Scope]:
        clause = self.clause_at(position)
        return clause.scopes if clause is not None else frozenset()

    def negation_before(self, position: int) -> str | None:
        """The negator governing the word at ``position``, if one stands within the window in its clause."""
        clause = self.clause_at(position)
        floor = clause.start if clause is not None else 0
        nearest = bisect.bisect_left(self._negator_starts, position) - 1
        if nearest < 0 or self._negator_starts[nearest] < floor:
            return None  # no negator earlier in this clause: nothing to walk back to
        index = bisect.bisect_left(self._word_starts, position) - 1
        counted = 0
        while index >= 0 and counted < self.vocabulary.negation_window:
            start, end, word = self._words[index]
            if start < floor or "," in self.text[end:position]:
                return None  # another clause: "niet ingebroken, wel vernield" leaves "vernield" alone
            if word in self.vocabulary.negators:
                return word
            if word not in self.vocabulary.negation_bridges:
                counted += 1
            index -= 1
            position = start
        return None


class Readings(NamedTuple):
    """A message's subject and body, each folded and read into clauses once for every question asked."""

    subject: Context
    body: Context


def word_count(readings: Readings) -> int:
    """How many words the subject and body hold together."""
    return len(readings.subject.text.split()) + len(readings.body.text.split())


def read(subject: str, text: str, vocabulary: Vocabulary) -> Readings:
    return Readings(Context(fold(subject), vocabulary), Context(fold(text), vocabulary))


def _clauses(folded: str, vocabulary: Vocabulary) -> list[Clause]:
    quoted = [(m.start(), m.end()) for m in _QUOTATION.finditer(folded)]
    quoted.extend(_introduced_quotes(folded, vocabulary))
    spans = _sentences(folded)
    return [_clause(folded, start, end, vocabulary, quoted) for start, end in spans]


def _sentences(folded: str) -> list[tuple[int, int]]:
    """Sentence spans: ended by . ! ? ; by a blank line, or by the end of a short line (headings,
    list items, a phone's one-line messages); a hard-wrapped long line continues its sentence."""
    ends = {match.end() for match in _SENTENCE_END.finditer(folded)}
    line_start = 0
    for line in folded.split("\n"):
        line_end = line_start + len(line)
        if len(line.strip()) < SHORT_LINE:
            ends.add(line_end)
            if line_start > 0:
                ends.add(line_start - 1)  # a short line also starts a sentence of its own
        line_start = line_end + 1
    spans, start = [], 0
    for end in sorted(ends | {len(folded)}):
        if end > start and folded[start:end].strip():
            spans.append((start, end))
        start = max(start, end)
    return spans


def _introduced_quotes(folded: str, vocabulary: Vocabulary) -> list[tuple[int, int]]:
    """After "het bericht luidt:" and the like, the rest of the paragraph is the quoted message."""
    found = []
    for introducer in vocabulary.quote_introducers:
        for match in re.finditer(re.escape(introducer) + r"[^\n:]{0,40}:", folded):
            end = folded.find("\n\n", match.end())
            found.append((match.end(), len(folded) if end < 0 else end))
    return found


def _clause(folded: str, start: int, end: int, vocabulary: Vocabulary,
            quoted: list[tuple[int, int]]) -> Clause:
    text = folded[start:end].strip(" \t\n-*•>")
    words = set(_WORD.findall(text))
    scopes: dict[Scope, str] = {}
    if any(q_start <= start + len(folded[start:end]) // 2 < q_end for q_start, q_end in quoted):
        scopes[Scope.QUOTED] = "quoted text"
    head = _first_words(text, 6)
    if (hit := _starts_with(head, vocabulary.conditional_starts)) is not None:
        scopes[Scope.CONDITIONAL] = hit
    if (hit := _starts_with(head, vocabulary.instruction_starts)) is not None or (hit := _contains(text, vocabulary.instruction_phrases)) is not None:
        scopes[Scope.INSTRUCTION] = hit
    now = _contains(text, vocabulary.now)
    if now is not None:
        scopes[Scope.NOW] = now
    else:
        past = next(iter(sorted(words & vocabulary.past_words)), None) or _contains(text, vocabulary.past_phrases)
        if past is not None:
            scopes[Scope.PAST] = past
    why = next(iter(scopes.values()), "")
    return Clause(start, end, frozenset(scopes), why)


def _first_words(text: str, count: int) -> str:
    return " ".join(_WORD.findall(text)[:count])


def _starts_with(head: str, starts: tuple[str, ...]) -> str | None:
    """The first of ``starts`` (in their order) that ``head``'s first words are."""
    order = _order_of(starts)
    words = head.split(" ")
    found = [order[prefix] for k in range(1, len(words) + 1) if (prefix := " ".join(words[:k])) in order]
    return starts[min(found)] if found else None


@lru_cache(maxsize=16)  # one per word list of the vocabulary
def _order_of(phrases: tuple[str, ...]) -> dict[str, int]:
    order: dict[str, int] = {}
    for index, phrase in enumerate(phrases):
        order.setdefault(phrase, index)
    return order


def _contains(text: str, phrases: tuple[str, ...]) -> str | None:
    """The first phrase of ``phrases`` found in ``text`` as whole words."""
    for phrase in phrases:
        index = text.find(phrase)
        while index >= 0:
            before = text[index - 1] if index > 0 else " "
            after_index = index + len(phrase)
            after = text[after_index] if after_index < len(text) else " "
            if not before.isalnum() and not after.isalnum():
                return phrase
            index = text.find(phrase, index + 1)
    return None
