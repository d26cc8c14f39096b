"""``binrelay check``: everything that can be checked before running.

Each check prints one line, "ok" or "FAIL" with the reason; the exit code is 0
when all pass, 1 otherwise (a broken configuration already exited 2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from relay.config import Config
from relay.delivery.smtp import smtp_connection
from relay.service.connections import imap_client
from relay.service.runtime import make_classifier
from storage.db import make_engine, migrate


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def _check(name: str, action: Callable[[], str]) -> CheckResult:
    try:
        return CheckResult(name, True, action())
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable line
        return CheckResult(name, False, f"{type(exc).__name__}: {exc}".strip())


def _rules(config: Config) -> str:
    make_classifier(config)
    return f"rules loaded{' with ' + str(config.rules.path) if config.rules.path else ''}"


def _database(config: Config) -> str:

    migrate(make_engine(config.database.url))
    return "database reachable and migrated"


def _secret(section: str, config: Config) -> str:
    source = getattr(config, section)
    problem = source.secret_problem()
    if problem:
        raise RuntimeError(f"{section}: {problem}")
    return f"{section} password readable"


def _imap(config: Config) -> str:

    assert config.imap is not None
    client = imap_client(config.imap)
    try:
        capabilities = {c.decode() if isinstance(c, bytes) else c for c in client.capabilities()}
        status = client.select_folder(config.imap.mailbox, readonly=True)
        idle = "IDLE" if "IDLE" in capabilities else "polling (no IDLE)"
        move = "MOVE" if "MOVE" in capabilities else "COPY+EXPUNGE (no MOVE)"
        return f"IMAP login ok at {config.imap.host}:{config.imap.port}, {status[b'EXISTS']} in {config.imap.mailbox}, {idle}, {move}"
    finally:
        client.logout()


def _smtp(config: Config) -> str:

    async def login() -> str:
        connection = smtp_connection(config.smtp)
        await connection.connect()
        try:
            return f"SMTP login ok at {config.smtp.host}:{config.smtp.port}"
        finally:
            await connection.quit()

    return asyncio.run(login())


def run_checks(config: Config, out: TextIO) -> int:
    checks: list[tuple[str, Callable[[], str]]] = [
        ("config", lambda: f"{config.source_path}: {len(config.wards)} wards, {len(config.partners)} partners"),
        ("rules", lambda: _rules(config)),
        ("database", lambda: _database(config)),
    ]
    if config.imap is not None:
        checks.append(("imap password", lambda: _secret("imap", config)))
        checks.append(("imap", lambda: _imap(config)))
    if config.smtp.password_env or config.smtp.password_file:
        checks.append(("smtp password", lambda: _secret("smtp", config)))
    checks.append(("smtp", lambda: _smtp(config)))
    results = [_check(name, action) for name, action in checks]
    for result in results:
        print(f"{'ok  ' if result.ok else 'FAIL'} {result.name}: {result.detail}", file=out)
    return 0 if all(result.ok for result in results) else 1
