"""One exit-code rule for every command: 0 done, 1 a runtime failure, 2 a usage or configuration problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.cli.main import main
from tests.test_cli_readonly import configured

COMMANDS = [["init"], ["run", "--once"], ["check"], ["classify", "x.eml"], ["members", "list"],
            ["members", "import", "x.csv"], ["queue", "list"], ["queue", "show", "1"], ["report"], ["status"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_broken_configuration_exits_2_naming_file_and_key(tmp_path: Path, command: list[str],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config, _database = configured(tmp_path)
    config.write_text(config.read_text().replace('name = "BIN Test"', 'name = "BIN Test"\nlanguage = "fr"'))
    assert main(["--config", str(config), *command]) == 2
    err = capsys.readouterr().err
    assert f"{config}: network.language:" in err


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_missing_configuration_file_exits_2(tmp_path: Path, command: list[str],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "nope.toml"), *command]) == 2
    assert "--config FILE or BINRELAY_CONFIG" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["queue", "list", "--bogus"], ["report", "--month", "2026-13"],
                                     ["queue", "show", "one"], ["frobnicate"]], ids=" ".join)
def test_usage_errors_exit_2(tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    config, _database = configured(tmp_path)
    try:
        code = main(["--config", str(config), *command])
    except SystemExit as stop:  # argparse
        code = int(stop.code or 0)
    assert code == 2
    assert capsys.readouterr().err


@pytest.mark.parametrize("command", [["queue", "list"], ["members", "list"], ["status"], ["report"]], ids=" ".join)
def test_a_reading_command_on_a_missing_database_exits_1(tmp_path: Path, command: list[str],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    config, _database = configured(tmp_path)
    assert main(["--config", str(config), *command]) == 1
    assert "no database yet" in capsys.readouterr().err


def test_done_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, _database = configured(tmp_path)
    assert main(["--config", str(config), "init"]) == 0
    assert main(["--config", str(config), "queue", "list"]) == 0
    assert main(["--config", str(config), "report", "--month", "2026-11"]) == 0
    capsys.readouterr()
