"""Text as the rules compare it: folded case and accents, subjects without Re:/Fwd:."""

from __future__ import annotations

import re
import unicodedata

_REPLY_PREFIX = re.compile(r"^\s*((re|antw|aw|sv|vs|wg)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"^\s*((fw|fwd|doorst|tr|wg)\s*:\s*)+", re.IGNORECASE)


class _FoldTable(dict[int, str]):
    """``str.translate``'s table for ``fold``: each character's folded form, worked out on first sight."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        base = unicodedata.normalize("NFKD", char)[:1] or char
        folded = "'" if char in "\u2018\u2019" else (base if base.isascii() else char)
        self[code] = folded
        return folded


_FOLDED = _FoldTable()


def fold(text: str) -> str:
    """Lower case without accents, the form every matcher and comparison works on.

    Each character folds to exactly one, so positions found in the folded text
    are positions in the original too.
    """
    lowered = text.lower()
    if lowered.isascii():
        return lowered
    return lowered.translate(_FOLDED)


def clean_subject(subject: str) -> str:
    """The subject without reply and forward prefixes ("Re: Fwd: Antw: ...")."""
    return _FORWARD_PREFIX.sub("", _REPLY_PREFIX.sub("", subject or "")).strip()


def is_reply_subject(subject: str) -> bool:
    return bool(_REPLY_PREFIX.match(subject or ""))


def is_forward_subject(subject: str) -> bool:
    return bool(_FORWARD_PREFIX.match(subject or ""))


def split_names(text: str) -> list[str]:
    """A written list of names: "Maaspoort, Empel en Rosmalen-Noord" -> ["Maaspoort", "Empel", "Rosmalen-Noord"]."""
    pieces = re.split(r"\s*[,;/&+]\s*|\s+(?:en|and)\s+", text, flags=re.IGNORECASE)
    names = [piece.strip(" \t.!?:\"\u201c\u201d*") for piece in pieces]
    return [name for name in names if name]
