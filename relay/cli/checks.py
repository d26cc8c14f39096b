"""``binrelay check``: everything that can be checked before running.

Each check prints one line, "ok" or "FAIL" with the reason; the exit code is 0
when all pass, 1 otherwise (a broken configuration already exited 2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from relay.config import Config
from relay.delivery.smtp import smtp_connection
from relay.ingest.folders import ensure as ensure_folder
from relay.service.connections import imap_client
from relay.service.credentials import CredentialPath, resolve
from relay.service.runtime import make_classifier
from storage.db import schema_state


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

    state = schema_state(config.database.url)  # read only: check changes nothing on disk
    if not state.exists:
        return f"{state.describe()}: the service's first start (or `binrelay init`) creates it"
    if not state.current:
        return f"reachable; {state.describe()}: migrated at the service's start (or `binrelay init`)"
    return f"reachable, {state.describe()}"


def _secret(section: str, config: Config, credential: CredentialPath | None) -> str:
    if credential is not None and credential.source is None:
        where = f"{credential.unit_file} has no LoadCredential={credential.name}:..." if credential.unit_file \
            else f"no unit file {credential.unit} found (name it with --unit FILE)"
        raise RuntimeError(f"{section}: password_file is the systemd credential {credential.name!r}, but {where}")
    source = getattr(config, section)
    problem = source.secret_problem()
    if problem:
        raise RuntimeError(f"{section}: {problem}")
    if credential is not None:
        return (f"{section} password readable: credential {credential.name!r} from {credential.source} "
                f"({credential.unit_file}), as the service will see it")
    return f"{section} password readable"


def as_the_service_sees_it(config: Config, unit_file: Path | None) -> tuple[Config, dict[str, CredentialPath]]:
    """The configuration with each systemd credential path read from its source (outside the service
    ``/run/credentials/...`` does not exist yet), and the credentials found per section."""
    credentials: dict[str, CredentialPath] = {}
    update = {}
    for section in ("imap", "smtp"):
        source = getattr(config, section)
        if source is None or source.password_file is None:
            continue
        credential = resolve(source.password_file, unit_file)
        if credential is None:
            continue
        credentials[section] = credential
        if credential.source is not None:
            update[section] = source.model_copy(update={"password_file": credential.source})
    return (config.model_copy(update=update) if update else config), credentials


def _imap(config: Config) -> str:

    assert config.imap is not None
    client = imap_client(config.imap)
    try:
        capabilities = {c.decode() if isinstance(c, bytes) else c for c in client.capabilities()}
        status = client.select_folder(config.imap.mailbox, readonly=True)
        # Created now when missing, as the service's first pass would: only trying tells whether the server allows it.
        folder = ensure_folder(client, config.imap.processed_folder)
        idle = "IDLE" if "IDLE" in capabilities else "polling (no IDLE)"
        move = "MOVE" if "MOVE" in capabilities else "COPY+EXPUNGE (no MOVE)"
        return (f"IMAP login ok at {config.imap.host}:{config.imap.port}, {status[b'EXISTS']} in "
                f"{config.imap.mailbox}, processed folder {folder.name!r} {folder.why}, {idle}, {move}")
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


def run_checks(config: Config, out: TextIO, unit_file: Path | None = None) -> int:
    """Every check, one line each; exit 0 when all pass, 1 otherwise. Nothing on disk changes (on the IMAP
    server, a missing processed folder is created, as the first pass would)."""
    config, credentials = as_the_service_sees_it(config, unit_file)
    checks: list[tuple[str, Callable[[], str]]] = [
        ("config", lambda: f"{config.source_path}: {len(config.wards)} wards, {len(config.partners)} partners"),
        ("rules", lambda: _rules(config)),
        ("database", lambda: _database(config)),
    ]
    if config.imap is not None:
        checks.append(("imap password", lambda: _secret("imap", config, credentials.get("imap"))))
        checks.append(("imap", lambda: _imap(config)))
    if config.smtp.password_env or config.smtp.password_file:
        checks.append(("smtp password", lambda: _secret("smtp", config, credentials.get("smtp"))))
    checks.append(("smtp", lambda: _smtp(config)))
    results = [_check(name, action) for name, action in checks]
    for result in results:
        print(f"{'ok  ' if result.ok else 'FAIL'} {result.name}: {result.detail}", file=out)
    return 0 if all(result.ok for result in results) else 1
