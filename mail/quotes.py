"""The sender's own words: quotes, signatures, client artefacts and disclaimers cut.

One home for reading what a person newly wrote, for two readers:

- ``new_text``: a reply's new text, above a top-posted quote or below a
  bottom-posted one, without signatures ("Verzonden vanaf mijn iPhone") and
  client artefacts, as every real mail client writes it (the coordinator's
  command, a member's answer to an alert);
- ``own_text``: what a report says for classification: the new text without
  disclaimers, and for a forward the forwarded message itself (a coordinator
  forwarding a resident's mail forwards its content).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mail.text import fold, is_forward_subject

# A reply's own words are short; what lies beyond this is a long quote (and would only cost time).
MAX_REPLY_CHARS = 200_000
_FORWARD_MARKERS = re.compile(
    r"^\s*(?:-{2,}\s*(?:forwarded message|doorgestuurd bericht|original message|oorspronkelijk bericht)"
    r"\s*-{2,}|begin (?:doorgestuurd|forwarded) (?:bericht|message)\s*:?)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_FORWARD_HEADER = re.compile(
    r"^\s*\*?(van|from|verzonden|sent|aan|to|cc|onderwerp|subject|datum|date)\s*:", re.IGNORECASE
)

_ATTRIBUTION_VERB = r"(?:schreef|wrote|schrieb|geschreven|a\s+écrit|escribió|scrisse)"
# "Op 12-11-2026 om 09:14 schreef Anna:", "On Mon, 3 Nov 2026, BIN <...> wrote:",
# "Am 03.11.2026 um 14:02 schrieb ...:", Apple's "... heeft ... het volgende geschreven:".
_ATTRIBUTION = re.compile(
    rf"^\s*(?:(?:op|on|am|le|el|il)\b.{{0,300}}?\b{_ATTRIBUTION_VERB}\b.{{0,300}}"
    rf"|.{{1,200}}?\b{_ATTRIBUTION_VERB}(?:\s+het\s+volgende)?)\s*:\s*$",
    re.IGNORECASE,
)
# "Op ... schreef" whose name/address runs on to the next line (Gmail wraps at 76).
_ATTRIBUTION_START = re.compile(r"^\s*(?:op|on|am|le|el)\s+\S.*(?:\d|schreef|wrote|schrieb|<)", re.IGNORECASE)
_SEPARATOR = re.compile(
    r"^\s*(?:-{2,}\s*(?:oorspronkelijk\s+bericht|original\s+message|doorgestuurd\s+bericht|forwarded\s+message"
    r"|urspr(?:ü|ue)ngliche\s+nachricht|message\s+d'origine)\s*-{2,}"
    r"|(?:begin\s+doorgestuurd\s+bericht|begin\s+forwarded\s+message|forwarded\s+message)\s*:"
    r"|_{10,})\s*$",
    re.IGNORECASE,
)
_DATE = re.compile(r"\b\d{1,4}[-./ ]\s*(?:\d{1,2}|[a-z]{3,9}\.?)[-./ ]\s*\d{2,4}\b", re.IGNORECASE)
_HEADER_FROM = re.compile(r"^\s*\*?(?:van|from|de|von)\s*:\s*\*?\s*\S", re.IGNORECASE)
_HEADER_OTHER = re.compile(
    r"^\s*\*?(?:verzonden|sent|date|datum|aan|to|onderwerp|subject|cc|envoyé|gesendet|an|betreff|objet|à)\s*:",
    re.IGNORECASE,
)
_RULE = re.compile(r"^\s*[-_=*~]{3,}\s*$")  # <hr> rendered as dashes, and similar lines
_QUOTED = re.compile(r"^\s*>")
_SIGNATURE_DASHES = re.compile(r"^--\s*$")
_MOBILE_SIGNATURE = re.compile(
    r"^\s*(?:"
    r"(?:verzonden|verstuurd|gestuurd|sent|envoyé|gesendet)\s+(?:vanaf|vanuit|van|via|met|from|with|von|depuis|mit)\s+"
    r"(?:(?:mijn|my|mein(?:em)?|mon)\b.{0,60}|(?:de\s+|the\s+)?\[?(?:yahoo|outlook|mail|proton\s*mail|gmail|samsung"
    r"|galaxy|huawei|android|ios|iphone|ipad|blackberry|aol|gmx|hotmail|telefoon|fairemail|k-9|spark)\b.{0,80})"
    r"|(?:get|download)\s+outlook\s+for\s+.{0,80}"
    r"|outlook\s+voor\s+.{0,30}\s*downloaden.{0,80}"
    r"|outlook\s+(?:for|voor)\s+(?:android|ios).{0,80}"
    r")\s*$",
    re.IGNORECASE,
)
_ARTEFACT = re.compile(
    r"^\s*(?:\[(?:cid|image|afbeelding|bild)\s*:[^\]]*\]|<image\d*\.\w+>|\[https?://[^\]]*\])\s*$", re.IGNORECASE
)
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
def _clean_lines(text: str) -> list[str]:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ").translate(_INVISIBLE)
    return [line.rstrip() for line in text.split("\n")]


def _attribution_at(lines: list[str], index: int) -> bool:
    """An attribution line ("Op ... schreef ...:"), possibly wrapped over two or three lines."""
    if _ATTRIBUTION.match(lines[index]) or _bare_attribution_at(lines, index):
        return True
    if not _ATTRIBUTION_START.match(lines[index]):
        return False
    joined = lines[index]
    for following in lines[index + 1 : index + 3]:
        if not following.strip() or _QUOTED.match(following):
            return False
        joined += " " + following.strip()
        if _ATTRIBUTION.match(joined):
            return True
    return False


def _bare_attribution_at(lines: list[str], index: int) -> bool:
    """A verb-less attribution right above quoted lines ("3 nov. 2026 14:02 BIN <bin@...>:", FairEmail)."""
    line = lines[index]
    if not (line.endswith(":") and len(line) <= 300 and ("@" in line or _DATE.search(line))):
        return False
    following = next((other for other in lines[index + 1 : index + 3] if other.strip()), "")
    return bool(_QUOTED.match(following))


def _header_block_at(lines: list[str], index: int) -> bool:
    """An Outlook-style "Van: / Verzonden: / Aan: / Onderwerp:" block starting here."""
    if not _HEADER_FROM.match(lines[index]):
        return False
    following = [line for line in lines[index + 1 : index + 8] if line.strip()][:4]
    return any(_HEADER_OTHER.match(line) for line in following)


def _quote_starts_at(lines: list[str], index: int) -> bool:
    line = lines[index]
    if not line.strip():
        return False
    return bool(
        _QUOTED.match(line) or _SEPARATOR.match(line) or _attribution_at(lines, index) or _header_block_at(lines, index)
    )


def _is_signature(line: str) -> bool:
    return bool(_SIGNATURE_DASHES.match(line) or _MOBILE_SIGNATURE.match(line))


def strip_edges(lines: list[str]) -> list[str]:
    """Without blank lines and leftover rules (an <hr> above a cut quote) at both ends."""
    start, end = 0, len(lines)
    while start < end and (not lines[start].strip() or _RULE.match(lines[start])):
        start += 1
    while end > start and (not lines[end - 1].strip() or _RULE.match(lines[end - 1])):
        end -= 1
    return lines[start:end]


def _below_quote(lines: list[str]) -> list[str]:
    """Bottom-posting: the unquoted lines after a leading quote (and between quotes)."""
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if _QUOTED.match(line):
            index += 1
            continue
        if line.strip() and _attribution_at(lines, index):
            # Skip the (possibly wrapped) attribution up to its closing colon.
            while index < len(lines) and not lines[index].rstrip().endswith(":"):
                index += 1
            index += 1
            continue
        kept.append(line)
        index += 1
    return kept


def new_text(text: str) -> str:
    """The part of a reply's plain text that the replier wrote, without quote, signature or artefacts."""
    lines = [line for line in _clean_lines(text[:MAX_REPLY_CHARS]) if not _ARTEFACT.match(line)]
    for _ in range(3):  # bottom-posted text can hold a further quote; three rounds are plenty
        quote = next((i for i in range(len(lines)) if _quote_starts_at(lines, i)), len(lines))
        above = strip_edges(lines[:quote])
        if above or quote == len(lines) or not (_QUOTED.match(lines[quote]) or _attribution_at(lines, quote)):
            break
        below = _below_quote(lines[quote:])
        if not any(line.strip() for line in below):
            break
        lines = below
    cut = next((i for i, line in enumerate(above) if _is_signature(line)), len(above))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(strip_edges(above[:cut])))


def is_forward(subject: str, body: str) -> bool:
    return is_forward_subject(subject) or bool(_FORWARD_MARKERS.search(body or ""))


def own_text(body: str, subject: str, disclaimer_starts: Sequence[str]) -> str:
    """What the sender wrote: without quotes, signatures and disclaimers.

    A forward keeps the forwarded message: the note above it and the
    forwarded text are each cut at their own signature and disclaimer.
    """
    text = (body or "").replace("\r\n", "\n").replace("\r", "\n")
    starts = tuple(fold(start) for start in disclaimer_starts)
    if is_forward(subject, text):
        parts = _FORWARD_MARKERS.split(text)
        kept = [_without_disclaimer(_unwrap_forward(part), starts) for part in parts]
        return "\n".join(part for part in kept if part).strip()
    return _without_disclaimer(new_text(text), starts)


def _unwrap_forward(text: str) -> str:
    """A forwarded part: its header lines dropped, cut at its own signature."""
    lines = [line for line in _clean_lines(text) if not _FORWARD_HEADER.match(line) and not _QUOTED.match(line)]
    cut = next((i for i, line in enumerate(lines) if i > 0 and _is_signature(line)), len(lines))
    return "\n".join(lines[:cut])


def _without_disclaimer(text: str, starts: tuple[str, ...]) -> str:
    lines = text.split("\n")
    if starts:
        cut = next((i for i, line in enumerate(lines) if i > 0 and fold(line.strip()).startswith(starts)), len(lines))
        lines = lines[:cut]
    return "\n".join(lines).strip()
