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
