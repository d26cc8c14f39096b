"""The message's own words: quotes, signatures and disclaimers removed; text folded.

Police and municipality disclaimers are long and full of words like
"strafbaar"; a reply carries the whole earlier message below it. Neither may
decide a category, a ward or an urgency, so the engine reads only what the
sender wrote themselves. A forwarded message IS the sender's content (a
coordinator forwarding a resident's mail), so a forward keeps its body.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_REPLY_PREFIX = re.compile(r"^\s*((re|antw|aw|sv|vs|wg)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"^\s*((fw|fwd|doorst|tr|wg)\s*:\s*)+", re.IGNORECASE)
_FORWARD_MARKERS = re.compile(
    r"^\s*(-{2,}\s*(forwarded message|doorgestuurd bericht|original message|oorspronkelijk bericht)"
    r"\s*-{2,}|begin (doorgestuurd|forwarded) (bericht|message)\s*:?)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
# The same markers without capturing groups, to split a forward into its parts.
_FORWARD_SPLIT = re.compile(
    r"^\s*(?:-{2,}\s*(?:forwarded message|doorgestuurd bericht|original message|oorspronkelijk bericht)"
    r"\s*-{2,}|begin (?:doorgestuurd|forwarded) (?:bericht|message)\s*:?)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
# Where the quoted earlier message starts in a reply.
_QUOTE_STARTS = [
    re.compile(r"^\s*op .{4,120}(schreef|geschreven|wrote)\b.{0,160}:\s*$", re.IGNORECASE),
    re.compile(r"^\s*on .{4,160}\bwrote:\s*$", re.IGNORECASE),
    re.compile(r"^\s*am .{4,120}schrieb.{0,120}:\s*$", re.IGNORECASE),
    re.compile(r"^\s*-{3,}\s*(oorspronkelijk bericht|original message)\s*-{3,}\s*$", re.IGNORECASE),
    re.compile(r"^\s*_{10,}\s*$"),
    re.compile(r"^\s*(van|from)\s*:\s*.+$", re.IGNORECASE),
]
_HEADER_LINE = re.compile(
    r"^\s*(van|from|verzonden|sent|aan|to|cc|onderwerp|subject|datum|date)\s*:", re.IGNORECASE
)
_SIGNATURE = re.compile(r"^--\s*$")
_PHONE_SIGNATURES = re.compile(
    r"^\s*(verzonden vanaf mijn|verstuurd vanaf mijn|sent from my|get outlook for|outlook voor)\b",
    re.IGNORECASE,
)


def fold(text: str) -> str:
    """Lower case without accents, the form every matcher works on (same length per char)."""
    lowered = text.lower()
    if lowered.isascii():
        return lowered
    folded = []
    for char in lowered:
        base = unicodedata.normalize("NFKD", char)[:1] or char
        folded.append(base if base.isascii() else char)
    return "".join(folded).replace("’", "'").replace("‘", "'")


def clean_subject(subject: str) -> str:
    return _FORWARD_PREFIX.sub("", _REPLY_PREFIX.sub("", subject or "")).strip()


def is_forward(subject: str, body: str) -> bool:
    return bool(_FORWARD_PREFIX.match(subject or "") or _FORWARD_MARKERS.search(body or ""))


def own_text(body: str, subject: str, disclaimer_starts: Sequence[str]) -> str:
    """What the sender wrote: without quotes, signatures and disclaimers.

    A forward keeps the forwarded message: the note above it and the
    forwarded text are each cut at their own signature and disclaimer.
    """
    text = (body or "").replace("\r\n", "\n").replace("\r", "\n")
    starts = tuple(fold(s) for s in disclaimer_starts)
    if is_forward(subject, text):
        parts = _FORWARD_SPLIT.split(text)
        kept = [_clean_lines(_unwrap_forward(part.split("\n")), starts) for part in parts]
        return "\n".join(part for part in kept if part).strip()
    return _clean_lines(_cut_reply_quote(text.split("\n")), starts)


def _clean_lines(lines: list[str], starts: tuple[str, ...]) -> str:
    lines = [line for line in lines if not line.lstrip().startswith(">")]
    lines = _cut_at(lines, lambda line: bool(_SIGNATURE.match(line) or _PHONE_SIGNATURES.match(line)))
    lines = _cut_at(lines, lambda line: fold(line.strip()).startswith(starts) if starts else False)
    return "\n".join(lines).strip()


def _cut_reply_quote(lines: list[str]) -> list[str]:
    for index, line in enumerate(lines):
        if index == 0 and _HEADER_LINE.match(line):
            continue
        if any(pattern.match(line) for pattern in _QUOTE_STARTS):
            if _QUOTE_STARTS[-1].match(line) and not _header_block_follows(lines, index):
                continue
            own = lines[:index]
            if any(part.strip() for part in own):
                return own
            return lines[index + 1 :]  # bottom-posting: the new text is below the quote
    return lines


def _header_block_follows(lines: list[str], index: int) -> bool:
    window = lines[index : index + 6]
    return sum(1 for line in window if _HEADER_LINE.match(line)) >= 2


def _unwrap_forward(lines: list[str]) -> list[str]:
    """A forward: drop the marker and the forwarded header lines, keep every text line."""
    return [
        line for line in lines
        if not _FORWARD_MARKERS.match(line) and not _HEADER_LINE.match(line)
    ]


def _cut_at(lines: list[str], is_start: object) -> list[str]:
    assert callable(is_start)
    for index, line in enumerate(lines):
        if index > 0 and is_start(line):
            return lines[:index]
    return lines
