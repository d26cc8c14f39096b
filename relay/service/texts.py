"""Labels and formatting shared by every approval message (Dutch and English)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from relay.config import Config
from rules.loader import RuleSet

try:
    DISPLAY_ZONE: Any = ZoneInfo("Europe/Amsterdam")
except ZoneInfoNotFoundError:  # a system without tzdata: show UTC rather than fail
    from datetime import UTC

    DISPLAY_ZONE = UTC

URGENCY_LABELS = {
    "nl": {"urgent": "SPOED", "normal": "normaal", "low": "laag"},
    "en": {"urgent": "URGENT", "normal": "normal", "low": "low"},
}
WARNING_LABELS = {
    "nl": {
        "appearance": "beschrijving van uiterlijk of afkomst",
        "licence_plate": "kenteken",
        "photo": "foto (mogelijk herkenbaar persoon)",
        "phone_number": "telefoonnummer van een ander",
        "home_address": "huisadres",
        "email_address": "e-mailadres van een ander (de leden zien [e-mail])",
        "unknown_sender": "afzender is geen lid en geen partner",
        "flood": "veel berichten van deze afzender",
        "unreadable": "bericht niet volledig leesbaar",
    },
    "en": {
        "appearance": "description of appearance or origin",
        "licence_plate": "licence plate",
        "photo": "photo (may show a recognisable person)",
        "phone_number": "someone's phone number",
        "home_address": "home address",
        "email_address": "someone else's email address (members see [e-mail])",
        "unknown_sender": "sender is neither a member nor a partner",
        "flood": "many messages from this sender",
        "unreadable": "message not fully readable",
    },
}
SOURCE_LABELS = {
    "nl": {"police": "de politie", "municipality": "de gemeente", "coordinator": "een coördinator",
           "member": "een lid"},
    "en": {"police": "the police", "municipality": "the municipality", "coordinator": "a coordinator",
           "member": "a member"},
}
PARTNER_LABELS = {
    "nl": {"police": "de politie", "municipality": "de gemeente"},
    "en": {"police": "the police", "municipality": "the municipality"},
}


def language_of(config: Config) -> str:
    return config.network.language


def category_label(rules: RuleSet, category: str | None, language: str) -> str:
    """The category's name for people, from the rule files (``label_nl``/``label_en``)."""
    return rules.label(category, language)


def ward_names(config: Config, slugs: Iterable[str], language: str) -> str:
    names = [ward.name if (ward := config.ward(slug)) else slug for slug in slugs]
    if names:
        return ", ".join(names)
    return "hele netwerk" if language == "nl" else "whole network"


def partner_names(kinds: Sequence[str], language: str) -> str:
    labels = PARTNER_LABELS[language]
    return ", ".join(labels.get(kind, kind) for kind in kinds)


def warning_lines(warnings: Sequence[Any], language: str) -> list[str]:
    labels = WARNING_LABELS[language]
    lines = []
    for warning in warnings:
        if isinstance(warning, dict):
            kind = str(warning.get("kind", ""))
            evidence = str(warning.get("evidence", "")).strip()
            label = labels.get(kind, kind)
            lines.append(f"{label}: {evidence}" if evidence else label)
        else:
            lines.append(str(warning))
    return lines


def local_time(moment: datetime | None, zone: str | None = None) -> str:
    """A time in a message people read: the network's local time and its offset, "02-12-2026 02:19 (+01:00)"."""
    if moment is None:
        return "-"
    local = moment.astimezone(_zone(zone))
    offset = local.isoformat()[-6:] if local.utcoffset() else "+00:00"
    return f"{local.strftime('%d-%m-%Y %H:%M')} ({offset})"


def _zone(name: str | None) -> Any:
    try:
        return ZoneInfo(name) if name else DISPLAY_ZONE
    except ZoneInfoNotFoundError:  # checked when the configuration is loaded; tzdata may be gone since
        return DISPLAY_ZONE


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def trim_text(text: str, limit: int, language: str) -> str:
    """The message text for a coordinator, cut at a line end near ``limit``."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    cut = cut if cut > limit // 2 else limit
    more = len(text) - cut
    note = f"[... nog {more} tekens weggelaten]" if language == "nl" else f"[... {more} more characters left out]"
    return text[:cut].rstrip() + "\n" + note


def iso_time(moment: datetime | None, zone: str) -> str | None:
    """A time for JSON output: ISO 8601 in the network's zone with its offset, "2026-12-02T02:19:43+01:00"."""
    return moment.astimezone(_zone(zone)).isoformat(timespec="seconds") if moment is not None else None


def shown_time(moment: datetime | None, zone: str) -> str:
    """A time as an operator reads it: the network's local time with its offset, "2026-12-02 02:19:43+01:00"."""
    if moment is None:
        return "-"
    return moment.astimezone(_zone(zone)).isoformat(sep=" ", timespec="seconds")
