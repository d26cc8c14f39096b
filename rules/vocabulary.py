"""The words of a classification (SPEC's ``classify --json``): sources, kinds, categories, urgencies."""

from __future__ import annotations

from enum import StrEnum


class Source(StrEnum):
    POLICE = "police"
    MUNICIPALITY = "municipality"
    COORDINATOR = "coordinator"
    MEMBER = "member"
    UNKNOWN = "unknown"


class Kind(StrEnum):
    REPORT = "report"
    COMMAND = "command"
    AUTO_REPLY = "auto_reply"
    BOUNCE = "bounce"
    LOOP = "loop"


class Urgency(StrEnum):
    URGENT = "urgent"
    NORMAL = "normal"
    LOW = "low"


CATEGORIES = ("burglary", "suspicious", "theft", "vandalism", "nuisance", "fraud",
              "missing_person", "fire", "traffic", "info", "other")
# Partners: configured organisations whose mail names them (police, municipality).
PARTNERS = frozenset({Source.POLICE, Source.MUNICIPALITY})
