"""Which wards a text is about: names, aliases, streets, postcodes, tags, city-wide phrases."""

from __future__ import annotations

import re
from dataclasses import dataclass

from relay.config import Config
from rules.loader import RuleSet
from rules.matcher import Hit, TermMatcher
from rules.text import fold

_POSTCODE = re.compile(
    r"(?<![\d€.,:])([1-9]\d{3})(?:[ \t]?([A-Za-z]{2})(?![A-Za-z]))?(?![\d.,:]\d)"
)
_NOT_A_POSTCODE_AFTER = re.compile(
    r"\s*(euro|eur|uur|u\b|meter|m\b|km|jaar|mensen|leden|keer|x\b|kilo|kg|stuks|procent|%)",
    re.IGNORECASE,
)
_SUBJECT_TAG = re.compile(r"\[([^\]\[]{2,60})\]")


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


class PlaceFinder:
    def __init__(self, config: Config, rules: RuleSet) -> None:
        self._all = sorted(w.slug for w in config.wards)
        self._ambiguous = rules.ambiguous_places
        self._names: dict[str, str] = {}
        self._postcodes = {p: w.slug for w in config.wards for p in w.postcodes}
        matcher: TermMatcher[Place] = TermMatcher()
        for ward in config.wards:
            for name in {ward.name, *ward.aliases, ward.slug, ward.slug.replace("-", " ")}:
                folded = fold(name)
                self._names[folded] = ward.slug
                matcher.add(folded, True, Place(ward.slug, "name", name))
            for street in ward.streets:
                for variant in street_variants(street, rules.street_abbreviations):
                    matcher.add(variant, True, Place(ward.slug, "street", street))
        for phrase in city_wide_phrases(config, rules):
            matcher.add(phrase, True, Place("*", "city-wide", phrase))
        self._matcher = matcher.finish()

    @property
    def all_wards(self) -> list[str]:
        return list(self._all)

    def resolve_name(self, name: str) -> str | None:
        """A ward slug for a written name, alias or slug (case- and accent-insensitive)."""
        return self._names.get(fold(name.strip()))

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
                if self._needs_capital(place, written, same_length):
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


def city_wide_phrases(config: Config, rules: RuleSet) -> set[str]:
    cities = set(rules.city_names)
    name = fold(config.network.name)
    if name.startswith("bin "):
        cities.add(name[4:].strip())
    phrases: set[str] = set()
    for phrase in rules.city_wide:
        if "{city}" in phrase:
            phrases.update(phrase.replace("{city}", city) for city in cities)
        else:
            phrases.add(phrase)
    return phrases
