"""relay.service.credentials: a systemd credential path, read from outside the service."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.service import credentials
from relay.service.credentials import credential_name, loaded_credentials, resolve

UNIT = """[Service]
LoadCredential=imap:/etc/binrelay/credentials/imap
LoadCredential = smtp : /etc/binrelay/credentials/smtp
LoadCredential=token-key:token-key
# LoadCredential=old:/nowhere
"""


def test_a_credential_path_names_its_unit_and_credential() -> None:
    assert credential_name(Path("/run/credentials/binrelay.service/imap")) == ("binrelay.service", "imap")
    assert credential_name(Path("/etc/binrelay/imap.pass")) is None
    assert credential_name(Path("/run/credentials/binrelay.service")) is None


def test_the_unit_names_each_credentials_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(credentials, "CREDSTORES", (tmp_path / "credstore",))
    assert loaded_credentials(UNIT) == {
        "imap": Path("/etc/binrelay/credentials/imap"),
        "smtp": Path("/etc/binrelay/credentials/smtp"),
        "token-key": tmp_path / "credstore" / "token-key",  # a bare name: systemd's credential stores
    }


def test_inside_the_service_the_path_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    unit = tmp_path / "binrelay.service"
    unit.write_text(UNIT)
    path = Path("/run/credentials/binrelay.service/imap")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    found = resolve(path, unit)
    assert found is not None and found.source == Path("/etc/binrelay/credentials/imap")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/binrelay.service")
    assert resolve(path, unit) is None
