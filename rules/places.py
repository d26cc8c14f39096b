"""Wards, one home: which wards a text is about, and which ward a name, postcode or street means.

Three readers ask: the classifier (every ward a report names, by name, alias,
street, postcode, subject tag or a city-wide phrase), a coordinator's
``WIJK naam, naam`` line and a resident's ``AANMELDEN <wijk of postcode>``.
All of them go through one ``Places``, so a ward is written the same way for
every one of them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from mail.text import fold
from rules.directory import Directory
from rules.loader import RuleSet
from rules.matcher import Hit, TermMatcher

_POSTCODE = re.compile(
    r"(?<![\d€.,:])([1-9]\d{3})(?:[ \t]?([A-Za-z]{2})(?![A-Za-z]))?(?![\d.,:]\d)"
)
_NOT_A_POSTCODE_AFTER = re.compile(
    r"\s*(euro|eur|uur|u\b|meter|m\b|km|jaar|mensen|leden|keer|x\b|kilo|kg|stuks|procent|%)",
    re.IGNORECASE,
)
_SUBJECT_TAG = re.compile(r"\[([^\]\[]{2,60})\]")
# A postcode someone writes on its own ("5221", "5221 AB", "5221ab"): four digits, not part of a longer number.
_WRITTEN_POSTCODE = re.compile(r"(?<!\d)([1-9]\d{3})\s?([A-Za-z]{2})?(?![\dA-Za-z])")
_ARTICLE = re.compile(r"^(?:de|het|the|wijk|ward)\s+")
_POSTCODE_ONLY = re.compile(r"^\d{4}(?:\s?[a-z]{2})?$")
_WARD_PREFIX = re.compile(
    r"^(?:(?:in|voor|for|to)\s+)?(?:de\s+|the\s+)?(?:wijk|ward|buurt|neighbourhood|neighborhood)\s*:?\s+")


def name_key(name: str) -> str:
    """How names are compared: folded, without quotes, dashes and dots ("'t Zand" = "t zand")."""
    folded = re.sub(r"['\u2019`\"]", "", fold(name))
    return " ".join(re.split(r"[\s\-_.,;:!?()]+", folded)).strip()


@dataclass(frozen=True)
class Place:
    ward: str
    kind: str  # "name" | "street" | "city-wide"
    written: str  # as configured


@dataclass(frozen=True)
class PlaceResult:
    wards: list[str]
    explanation: list[str]
    city_wide: bool


class Places:
    def __init__(self, directory: Directory, rules: RuleSet) -> None:
        self._all = directory.slugs
        self._ambiguous = rules.ambiguous_places
        self._names: dict[str, str] = {}
        self._streets: dict[str, str] = {}
        self._postcodes = {p: w.slug for w in directory.wards for p in w.postcodes}
        matcher: TermMatcher[Place] = TermMatcher()
        for ward in directory.wards:
            for name in {ward.name, *ward.aliases, ward.slug, ward.slug.replace("-", " ")}:
                self._names.setdefault(name_key(name), ward.slug)
                matcher.add(fold(name), True, Place(ward.slug, "name", name))
            for street in ward.streets:
                self._streets.setdefault(name_key(street), ward.slug)
                for variant in street_variants(street, rules.street_abbreviations):
                    matcher.add(variant, True, Place(ward.slug, "street", street))
        for phrase in city_wide_phrases(directory, rules):
            matcher.add(phrase, True, Place("*", "city-wide", phrase))
        self._matcher = matcher.finish()

    @property
    def all_wards(self) -> list[str]:
        return list(self._all)

    # -- a name someone wrote ---------------------------------------------------

    def resolve_name(self, name: str) -> str | None:
        """A ward slug for a written name, alias or slug ("de wijk Maaspoort", "ROSMALEN NOORD")."""
        key = name_key(name)
        return self._names.get(key) or self._names.get(_ARTICLE.sub("", key))

    def resolve_names(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        """(slugs, names that match no ward) for names, aliases, slugs or postcodes, in order (``WIJK a, b``)."""
        slugs: list[str] = []
        unknown: list[str] = []
        for name in names:
            slug = self.resolve_name(name) or self._postcode_slug(name_key(name))
            if slug is None:
                unknown.append(name)
            elif slug not in slugs:
                slugs.append(slug)
        return slugs, unknown

    def ward_for(self, text: str | None) -> str | None:
        """The one ward a resident means ("Maaspoort", "5221 AB", "voor de wijk Empel graag",
        "Marathonloop 12"): None when unknown or when the text fits several wards."""
        if not text:
            return None
        key = _WARD_PREFIX.sub("", name_key(text.replace(",", " ")))
        slug = self.resolve_name(key)
        if slug is not None:
            return slug
        postcode = _WRITTEN_POSTCODE.search(text)
        if postcode is not None and (slug := self._postcodes.get(postcode.group(1))) is not None:
            return slug
        spaced = f" {key} "
        found = {ward for words, ward in (*self._names.items(), *self._streets.items())
                 if len(words) >= 3 and f" {words} " in spaced}
        return found.pop() if len(found) == 1 else None

    def _postcode_slug(self, key: str) -> str | None:
        return self._postcodes.get(key[:4]) if _POSTCODE_ONLY.match(key) else None

    # -- the wards a text is about -------------------------------------------------

    def find(self, subject: str, text: str) -> PlaceResult:
        found: dict[str, str] = {}
        city_wide = False
        for where, original in (("subject", subject), ("text", text)):
            folded = fold(original)
            same_length = len(folded) == len(original)
            for hit in _outermost(list(self._matcher.find(folded))):
                place = hit.payload
                written = original[hit.start : hit.end] if same_length else place.written
                if place.kind == "city-wide":
                    city_wide = True
                    found.setdefault("*", f"every ward: {where} says '{written}'")
                    continue
                if self._needs_capital(place, written, same_length) or _part_of_a_longer_name(place, folded, hit):
                    continue
                found.setdefault(place.ward, f"ward {place.ward}: {place.kind} '{written}' in the {where}")
            for slug, written in self._postcodes_in(original):
                found.setdefault(slug, f"ward {slug}: postcode '{written}' in the {where}")
        for tag in _SUBJECT_TAG.findall(subject):
            tagged = self.resolve_name(tag)
            if tagged is not None:
                found.setdefault(tagged, f"ward {tagged}: subject tag [{tag}]")
        if city_wide:
            return PlaceResult(list(self._all), [found["*"]], True)
        return PlaceResult(sorted(found), [found[s] for s in sorted(found)], False)

    def _needs_capital(self, place: Place, written: str, same_length: bool) -> bool:
        """'west' or 'haren' as ordinary words are not the ward West or De Haren."""
        if not same_length or fold(written) not in self._ambiguous:
            return False
        return not written[:1].isupper()

    def _postcodes_in(self, text: str) -> list[tuple[str, str]]:
        found = []
        for match in _POSTCODE.finditer(text):
            digits, letters = match.group(1), match.group(2)
            slug = self._postcodes.get(digits)
            if slug is None:
                continue
            if letters is None and _NOT_A_POSTCODE_AFTER.match(text, match.end()):
                continue
            found.append((slug, match.group(0).strip()))
        return found


def _part_of_a_longer_name(place: Place, folded: str, hit: Hit[Place]) -> bool:
    """'Zuid' in 'Zuid-Willemsvaart' or 'West' in 'Zeeland-West-Brabant' is part of another name (a canal,
    a police unit, a region), not the ward: a ward name joined by a hyphen to another word. A ward whose
    own name holds a hyphen ("Rosmalen-Noord") is matched whole, so its parts never get here."""
    if place.kind != "name":
        return False
    joined_after = folded.startswith("-", hit.end) and folded[hit.end + 1 : hit.end + 2].isalpha()
    joined_before = hit.start >= 2 and folded[hit.start - 1] == "-" and folded[hit.start - 2].isalpha()
    return joined_after or joined_before


def _outermost(hits: list[Hit[Place]]) -> list[Hit[Place]]:
    """Drop hits inside a longer one: 'Zuid' within 'Rosmalen-Zuid' is not the ward Zuid.

    A sort and one sweep, so a megabyte of repeated street names stays linear."""
    kept = []
    reach = -1
    for hit in sorted(hits, key=lambda h: (h.start, -h.end)):
        if hit.end > reach:
            kept.append(hit)
            reach = hit.end
    return kept


def street_variants(street: str, abbreviations: dict[str, list[str]]) -> set[str]:
    """'Kerkstraat' -> {'kerkstraat', 'kerkstr', 'kerkstr.'}; 'Van Broeckhovenlaan' also without 'van'."""
    folded = " ".join(fold(street).split())
    variants = {folded, folded.replace("-", " ")}
    for suffix, shorts in abbreviations.items():
        if folded.endswith(suffix) and len(folded) > len(suffix) + 2:
            stem = folded[: -len(suffix)]
            variants.update(stem + fold(short) for short in shorts)
    return {v for v in variants if len(v) >= 3}


def city_wide_phrases(directory: Directory, rules: RuleSet) -> set[str]:
    cities = set(rules.city_names)
    name = fold(directory.name)
    if name.startswith("bin "):
        cities.add(name[4:].strip())
    phrases: set[str] = set()
    for phrase in rules.city_wide:
        if "{city}" in phrase:
            phrases.update(phrase.replace("{city}", city) for city in cities)
        else:
            phrases.add(phrase)
    return phrases


def postcode_in(text: str | None) -> str | None:
    """The postcode as written, normalised for the member table ("5221 ab" -> "5221AB")."""
    match = _WRITTEN_POSTCODE.search(text or "")
    if match is None:
        return None
    return (match.group(1) + (match.group(2) or "")).upper()
