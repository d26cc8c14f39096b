"""What every use case needs, built once at start (and rebuilt on SIGHUP)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from relay.clock import Clock, SystemClock
from relay.config import Config
from relay.templating import Templates

if TYPE_CHECKING:
    from rules import Classifier


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
