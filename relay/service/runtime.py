"""What every use case needs, built once at start (and rebuilt on SIGHUP)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from relay.config import Config
from relay.service.clock import Clock, SystemClock
from relay.service.templating import Templates
from relay.service.tokens import Signer, signer_for
from relay.service.workers import Presence, new_worker_id
from rules import Classifier, load_rules
from storage.db import session_factory


@dataclass
class Runtime:
    config: Config
    sessions: sessionmaker[Session]
    classifier: Classifier
    templates: Templates
    signer: Signer  # the network's capability tokens (relay.service.tokens)
    clock: Clock = field(default_factory=SystemClock)
    # This process as a worker (relay.service.workers): its claims, its heartbeat.
    worker_id: str = field(default_factory=new_worker_id)
    presence: Presence | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("binrelay"))
    # Free slots for long-lived helpers (e.g. the SMTP pool), keyed by name.
    extras: dict[str, Any] = field(default_factory=dict)


def make_classifier(config: Config) -> Classifier:
    """The rules for this configuration: the shipped defaults and the operator's file (``[rules] path``)."""
    return Classifier(config.directory(), load_rules(config.rules.path))


def build_runtime(config: Config, database: Engine | sessionmaker[Session], clock: Clock) -> Runtime:
    """The one way a runtime is made: the daemon, every command and every test call this."""
    sessions = database if isinstance(database, sessionmaker) else session_factory(database)
    return Runtime(config=config, sessions=sessions, classifier=make_classifier(config),
                   templates=Templates(config), signer=signer_for(config), clock=clock)
