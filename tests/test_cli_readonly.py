"""Commands that only read change nothing on disk: no database is created or migrated by them."""

from __future__ import annotations

from pathlib import Path

import pytest

from relay.cli.main import main
from storage.db import make_engine, migrate, schema_state

CONFIG = """
[network]
name = "BIN Test"
address = "bin@example.org"
coordinators = ["kees@example.org"]

[maildir]
path = "{maildir}"

[smtp]
host = "127.0.0.1"
starttls = false

[database]
url = "sqlite:///{database}"

[[wards]]
slug = "maaspoort"
name = "Maaspoort"
postcodes = ["5221"]
"""

READING = [["queue", "list"], ["queue", "show", "1"], ["members", "list"], ["members", "export", "a@example.org"],
           ["report", "--month", "2026-11"]]


def configured(tmp_path: Path) -> tuple[Path, Path]:
    database = tmp_path / "state" / "binrelay.db"
    config = tmp_path / "binrelay.toml"
    config.write_text(CONFIG.format(maildir=tmp_path / "Maildir", database=database), encoding="utf-8")
    return config, database


@pytest.mark.parametrize("command", READING, ids=" ".join)
def test_a_reading_command_creates_no_database(tmp_path: Path, command: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config, database = configured(tmp_path)
    assert main(["--config", str(config), *command]) == 1
    err = capsys.readouterr().err
    assert "no database yet" in err and "binrelay init" in err
    assert not database.parent.exists()


def test_a_reading_command_does_not_migrate_an_old_database(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    config, database = configured(tmp_path)
    database.parent.mkdir()
    engine = make_engine(f"sqlite:///{database}")
    migrate(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0005'")
    engine.dispose()
    assert main(["--config", str(config), "queue", "list"]) == 1
    assert "schema at revision 0005, this binrelay needs" in capsys.readouterr().err
    assert schema_state(f"sqlite:///{database}").revision == "0005"


def test_after_init_the_reading_commands_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, database = configured(tmp_path)
    assert main(["--config", str(config), "init"]) == 0
    before = database.stat().st_mtime_ns
    assert main(["--config", str(config), "queue", "list"]) == 0
    assert main(["--config", str(config), "members", "list"]) == 0
    assert database.stat().st_mtime_ns == before
    capsys.readouterr()
