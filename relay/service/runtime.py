"""What every use case needs, built once at start (and rebuilt on SIGHUP)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from relay.config import Config
from relay.service.clock import Clock, SystemClock
from relay.service.templating import Templates
from rules import Classifier, load_rules


@dataclass
class Runtime:
    config: Config
    sessions: sessionmaker[Session]
    classifier: Classifier
    templates: Templates
    clock: Clock = field(default_factory=SystemClock)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("binrelay"))
    # Free slots for long-lived helpers (e.g. the SMTP pool), keyed by name.
    extras: dict[str, Any] = field(default_factory=dict)


def make_classifier(config: Config) -> Classifier:
    """The rules for this configuration: the shipped defaults and the operator's file (``[rules] path``)."""
    return Classifier(config.directory(), load_rules(config.rules.path))
