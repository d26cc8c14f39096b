"""`binrelay check` against real servers: one line per check, exit 0, 1 or 2."""

from __future__ import annotations

import pytest

from relay.cli.main import main
from relay.devservers.stack import LoopbackStack

pytestmark = pytest.mark.dovecot


def test_everything_reachable(stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(stack.config_path), "check"]) == 0
    out = capsys.readouterr().out
    for name in ("config", "rules", "database", "imap password", "imap", "smtp"):
        assert f"ok   {name}:" in out, out
    assert "IDLE" in out and "MOVE" in out


def test_a_wrong_imap_password_is_one_failing_line(stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> None:
    (stack.workdir / "imap.secret").write_text("not-the-password")
    assert main(["--config", str(stack.config_path), "check"]) == 1
    out = capsys.readouterr().out
    assert "FAIL imap:" in out and "ok   smtp:" in out
    assert "not-the-password" not in out


def test_a_broken_configuration_exits_2(stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> None:
    text = stack.config_path.read_text().replace('language = "nl"', 'language = "fr"')
    stack.config_path.write_text(text)
    assert main(["--config", str(stack.config_path), "check"]) == 2
    err = capsys.readouterr().err
    assert str(stack.config_path) in err and "network.language" in err


def test_check_changes_nothing_on_disk(stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> None:
    fresh = stack.workdir / "not-yet" / "binrelay.db"
    text = stack.config_path.read_text()
    stack.config_path.write_text(text.replace(str(stack.workdir / "binrelay.db"), str(fresh)))
    assert main(["--config", str(stack.config_path), "check"]) == 0
    out = capsys.readouterr().out
    assert "ok   database: no database yet: the service's first start (or `binrelay init`) creates it" in out
    assert not fresh.parent.exists()


def credential_config(stack: LoopbackStack) -> None:
    """The configuration as the guide writes it: the IMAP password as the service's credential."""
    text = stack.config_path.read_text()
    stack.config_path.write_text(
        text.replace(str(stack.workdir / "imap.secret"), "/run/credentials/binrelay.service/imap"))


def test_check_reads_a_systemd_credential_from_its_source(stack: LoopbackStack,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    credential_config(stack)
    unit = stack.workdir / "binrelay.service"
    unit.write_text(f"[Service]\nLoadCredential=imap:{stack.workdir / 'imap.secret'}\n")
    assert main(["--config", str(stack.config_path), "check", "--unit", str(unit)]) == 0
    out = capsys.readouterr().out
    assert f"credential 'imap' from {stack.workdir / 'imap.secret'}" in out
    assert "ok   imap: IMAP login ok" in out


def test_a_credential_the_unit_does_not_load_is_one_failing_line(stack: LoopbackStack,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    credential_config(stack)
    unit = stack.workdir / "binrelay.service"
    unit.write_text("[Service]\nLoadCredential=smtp:/etc/binrelay/credentials/smtp\n")
    assert main(["--config", str(stack.config_path), "check", "--unit", str(unit)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL imap password: RuntimeError: imap: password_file is the systemd credential 'imap', but {unit} has no " \
           "LoadCredential=imap:" in out


def test_a_missing_unit_file_is_a_usage_error(stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(stack.config_path), "check", "--unit", str(stack.workdir / "nope")]) == 2
    assert "--unit" in capsys.readouterr().err


def test_a_processed_folder_the_server_refuses_fails_the_check(stack: LoopbackStack,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    text = stack.config_path.read_text()
    stack.config_path.write_text(text.replace('processed_folder = "Verwerkt"', 'processed_folder = "Verwerkt..oud"'))
    assert main(["--config", str(stack.config_path), "check"]) == 1
    out = capsys.readouterr().out
    assert "FAIL imap:" in out and "cannot create the processed folder" in out
