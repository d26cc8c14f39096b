"""systemd credentials seen from outside the service.

The unit loads secrets with ``LoadCredential=imap:/etc/binrelay/credentials/imap``
and the configuration names them as the service sees them,
``/run/credentials/binrelay.service/imap``. That path exists only while the
service runs, so ``binrelay check`` before the first start (or an operator's
shell) reads the credential's source instead, as named in the unit file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CREDENTIALS_ROOT = Path("/run/credentials")
DEFAULT_UNIT = "binrelay.service"
UNIT_FOLDERS = (Path("/etc/systemd/system"), Path("/run/systemd/system"), Path("/usr/local/lib/systemd/system"),
                Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
# Where systemd looks for a LoadCredential= source given as a bare name.
CREDSTORES = (Path("/etc/credstore"), Path("/run/credstore"), Path("/usr/lib/credstore"))


@dataclass(frozen=True)
class CredentialPath:
    """A file the service reads as a credential, and where it comes from when the service is not running."""

    unit: str
    name: str
    source: Path | None  # None: the unit does not load it (or no unit file was found)
    unit_file: Path | None


def credential_name(path: Path) -> tuple[str, str] | None:
    """(unit, name) when ``path`` is ``/run/credentials/<unit>/<name>``."""
    try:
        relative = path.relative_to(CREDENTIALS_ROOT)
    except ValueError:
        return None
    parts = relative.parts
    return (parts[0], parts[1]) if len(parts) == 2 else None


def inside_the_service(unit: str) -> bool:
    """Whether this process is the service itself (systemd sets $CREDENTIALS_DIRECTORY for it)."""
    return os.environ.get("CREDENTIALS_DIRECTORY", "") == str(CREDENTIALS_ROOT / unit)


def find_unit_file(unit: str, folders: tuple[Path, ...] = UNIT_FOLDERS) -> Path | None:
    return next((folder / unit for folder in folders if (folder / unit).is_file()), None)


def loaded_credentials(unit_text: str) -> dict[str, Path]:
    """name -> source of every ``LoadCredential=name:source`` line (a bare source is looked up in the credstores)."""
    found: dict[str, Path] = {}
    for line in unit_text.splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() != "LoadCredential" or ":" not in value:
            continue
        name, _, source = value.strip().partition(":")
        path = Path(source.strip())
        if not path.is_absolute():
            path = next((store / path for store in CREDSTORES if (store / path).exists()), CREDSTORES[0] / path)
        found[name.strip()] = path
    return found


def resolve(path: Path, unit_file: Path | None = None) -> CredentialPath | None:
    """Where a credential path's secret is read from outside the service; None when it is no credential
    path or this process is the service."""
    named = credential_name(path)
    if named is None or inside_the_service(named[0]):
        return None
    unit, name = named
    unit_file = unit_file or find_unit_file(unit)
    if unit_file is None:
        return CredentialPath(unit, name, None, None)
    source = loaded_credentials(unit_file.read_text(encoding="utf-8")).get(name)
    return CredentialPath(unit, name, source, unit_file)
