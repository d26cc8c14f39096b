"""Find many terms in one pass over a text (Aho–Corasick), with word rules.

A city has thousands of street names and the categories hundreds of stems:
one automaton finds every occurrence of all of them in a single scan of the
(folded) text, whatever their number. Each hit is then checked against its
term's word rule: a whole-word term needs a boundary on both sides; a stem
may sit inside a compound ("woninginbraak") but must start at a word start or
be at least five letters long, so short stems do not fire inside unrelated words.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import ahocorasick

Payload = TypeVar("Payload")
MIN_INNER_STEM = 5


def is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


@dataclass(frozen=True)
class Hit(Generic[Payload]):
    payload: Payload
    start: int
    end: int  # exclusive


class TermMatcher(Generic[Payload]):
    """``add`` terms (already folded), then ``finish``; ``find`` is then thread-safe."""

    def __init__(self) -> None:
        self._automaton = ahocorasick.Automaton()
        self._entries: dict[str, list[tuple[bool, Payload]]] = {}

    def add(self, text: str, whole_word: bool, payload: Payload) -> None:
        self._entries.setdefault(text, []).append((whole_word, payload))

    def finish(self) -> TermMatcher[Payload]:
        for text, entries in self._entries.items():
            self._automaton.add_word(text, (text, entries))
        if self._entries:
            self._automaton.make_automaton()
        return self

    def find(self, folded: str) -> Iterator[Hit[Payload]]:
        if not self._entries:
            return
        for end_index, (text, entries) in self._automaton.iter(folded):
            start, end = end_index - len(text) + 1, end_index + 1
            starts_word = start == 0 or not is_word_char(folded[start - 1])
            ends_word = end == len(folded) or not is_word_char(folded[end])
            for whole_word, payload in entries:
                if whole_word and not (starts_word and ends_word):
                    continue
                if not whole_word and not starts_word and len(text.replace(" ", "")) < MIN_INNER_STEM:
                    continue
                yield Hit(payload, start, end)


def word_around(folded: str, start: int, end: int) -> str:
    """The whole word (compound) a hit sits in."""
    while start > 0 and (is_word_char(folded[start - 1]) or folded[start - 1] == "-"):
        start -= 1
    while end < len(folded) and (is_word_char(folded[end]) or folded[end] == "-"):
        end += 1
    return folded[start:end]
