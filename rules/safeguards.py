"""Safeguards: what a coordinator should look at twice before a report goes out.

Findings are warnings shown in the approval request; the coordinator decides.
They apply to residents' reports (members, unknown senders, coordinators):
police and municipality publish under their own name and are accountable for
their descriptions, so their signalementen are not second-guessed here.

- appearance: skin colour, origin or ethnicity describing a person, with the
  advice to describe behaviour instead (as Nextdoor's prompts did);
- licence_plate: a Dutch registration (all sidecodes since 1951);
- photo: an image attached to a resident's report (it may show a
  recognisable person; binrelay cannot tell, the coordinator can);
- phone_number: a Dutch phone number that is not a service line;
- home_address: a street with a house number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rules.vocabulary import Source

RESIDENT_SOURCES = frozenset({Source.MEMBER, Source.UNKNOWN, Source.COORDINATOR})
# An email address written in a text (a report naming a neighbour's address).
EMAIL_ADDRESS = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+", re.UNICODE)
MAX_EVIDENCE = 80

# Dutch licence-plate sidecodes: L = letter, D = digit.
SIDECODES = (
    "LL-DD-DD",
    "DD-DD-LL",
    "DD-LL-DD",
    "LL-DD-LL",
    "LL-LL-DD",
    "DD-LL-LL",
    "DD-LLL-D",
    "D-LLL-DD",
    "LL-DDD-L",
    "L-DDD-LL",
    "LLL-DD-L",
    "L-DD-LLL",
    "D-LL-DDD",
    "DDD-LL-D",
)
# Three-letter groups that are month abbreviations make "1-okt-26" a date.
MONTHS = frozenset(
    [
        "jan",
        "feb",
        "mrt",
        "maa",
        "apr",
        "mei",
        "jun",
        "jul",
        "aug",
        "sep",
        "okt",
        "nov",
        "dec",
        "oct",
        "may",
    ]
)

STREET_SUFFIXES = (
    "straat",
    "laan",
    "weg",
    "plein",
    "singel",
    "gracht",
    "kade",
    "dijk",
    "dreef",
    "hof",
    "park",
    "pad",
    "steeg",
    "markt",
    "ring",
    "baan",
    "erf",
    "veld",
    "wal",
    "haven",
    "berg",
    "street",
    "road",
    "lane",
    "avenue",
)
# A house number: 1-4 digits, an optional letter, not part of a longer token.
HOUSE_NUMBER = re.compile(r"(?<![\w.,:/-])(?P<number>\d{1,4})(?:\s?[a-zA-Z](?![\w-]))?(?![\w.,:/-]\w)")
STREET_WORDS_BEFORE = 4
LOOKBEHIND_CHARS = 80  # street names are short: never look further back than this
PHONE = re.compile(
    r"(?<![\w+])(?P<prefix>\+31|0031|0)[\s().-]*(?P<rest>\d(?:[\s.-]?\d){8})(?![\d-])"
)


@dataclass(frozen=True)
class Finding:
    kind: str  # appearance | licence_plate | photo | phone_number | home_address
    evidence: str  # the words that triggered it, as written

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "evidence": self.evidence}


@dataclass(frozen=True)
class AttachmentInfo:
    filename: str | None
    content_type: str


class Safeguards:
    """Built once per configuration; ``check`` is pure and cheap."""

    def __init__(self, terms: dict[str, Any], streets: Iterable[str] = ()) -> None:
        """``terms``: the rule set's ``safeguards`` tables (``RuleSet.safeguards``)."""
        patterns = [*terms["appearance"].get("nl", []), *terms["appearance"].get("en", [])]
        self._appearance = re.compile(
            r"\b(?:" + "|".join(f"(?:{p})" for p in patterns) + r")\b", re.IGNORECASE
        )
        self._service_prefixes = tuple(p.replace(" ", "") for p in terms["services"]["prefixes"])
        self._streets = {_fold(street) for street in streets}
        self._plate = _plate_pattern()
        self.advice = terms["appearance_advice"]

    def check(
        self, text: str, source: str, attachments: Sequence[AttachmentInfo] = ()
    ) -> list[Finding]:
        if source not in RESIDENT_SOURCES:
            return []
        findings = [
            *self._matches("appearance", self._appearance, text),
            *self._plates(text),
            *self._phones(text),
            *self._addresses(text),
            *_photos(attachments),
        ]
        return _unique(findings)

    def _matches(self, kind: str, pattern: re.Pattern[str], text: str) -> list[Finding]:
        return [Finding(kind, _evidence(m.group(0))) for m in pattern.finditer(text)]

    def _plates(self, text: str) -> list[Finding]:
        found = []
        for match in self._plate.finditer(text):
            groups = re.split(r"[- ]", match.group(0))
            if any(len(g) == 3 and g.lower() in MONTHS for g in groups):
                continue
            found.append(Finding("licence_plate", match.group(0).upper()))
        return found

    def _phones(self, text: str) -> list[Finding]:
        found = []
        for match in PHONE.finditer(text):
            national = "0" + re.sub(r"\D", "", match.group("rest"))
            if national.startswith(self._service_prefixes):
                continue
            found.append(Finding("phone_number", _evidence(match.group(0))))
        return found

    def _addresses(self, text: str) -> list[Finding]:
        """Each house number, with the few words before it if they are a street (linear time)."""
        found = []
        for match in HOUSE_NUMBER.finditer(text):
            before = text[max(0, match.start() - LOOKBEHIND_CHARS) : match.start()]
            if not before.endswith((" ", "\t")):
                continue
            words = before.split()[-STREET_WORDS_BEFORE:]
            street = self._street_in(" ".join(w for w in words if w[:1].isalpha() or w[:1] == "'"))
            if street is not None:
                found.append(
                    Finding("home_address", _evidence(f"{street} {match.group('number')}"))
                )
        return found

    def _street_in(self, words: str) -> str | None:
        """The longest tail of ``words`` that is a known street or ends like one."""
        parts = words.split()
        for start in range(len(parts)):
            candidate = " ".join(parts[start:])
            folded = _fold(candidate)
            if folded in self._streets:
                return candidate
            if start == len(parts) - 1 and folded.endswith(STREET_SUFFIXES) and len(folded) > 6:
                return candidate
        return None


def _photos(attachments: Sequence[AttachmentInfo]) -> list[Finding]:
    return [
        Finding("photo", _evidence(a.filename or a.content_type))
        for a in attachments
        if a.content_type.lower().startswith("image/")
    ]


def _plate_pattern() -> re.Pattern[str]:
    """Dashed plates in any case ("xx-123-x"); spaced ones only in capitals
    ("XX 123 X"), so that "om 3 uur 20" is not a plate."""
    dashed = _sidecode_alternatives("[A-Za-z]", "-")
    spaced = _sidecode_alternatives("[A-Z]", " ")
    return re.compile(r"(?<![\w-])(?:" + dashed + "|" + spaced + r")(?![\w-])")


def _sidecode_alternatives(letter: str, separator: str) -> str:
    alternatives = []
    for code in SIDECODES:
        groups = [(letter if g[0] == "L" else r"\d") + f"{{{len(g)}}}" for g in code.split("-")]
        alternatives.append(separator.join(groups))
    return "|".join(alternatives)


def _fold(value: str) -> str:
    return " ".join(value.lower().replace("’", "'").split())


def _evidence(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= MAX_EVIDENCE else value[: MAX_EVIDENCE - 1] + "…"


def _unique(findings: list[Finding]) -> list[Finding]:
    seen: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        seen.setdefault((finding.kind, finding.evidence.lower()), finding)
    return list(seen.values())


def other_addresses(text: str, public: Callable[[str], bool]) -> list[str]:
    """The email addresses in ``text`` that are not ``public`` (the network's, a partner's), in order."""
    found = [m.group(0) for m in EMAIL_ADDRESS.finditer(text) if not public(m.group(0))]
    return list(dict.fromkeys(address.lower() for address in found))
