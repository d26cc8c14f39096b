"""`binrelay demo`, as a newcomer runs it: the whole flow, narrated, in under a minute."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]


def test_demo_runs_the_whole_flow(dovecot_server: object) -> None:  # the fixture skips without Dovecot
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "relay.cli.main", "demo"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "source=police kind=report category=burglary wards=['maaspoort']" in out
    assert "approval requests" in out
    # Three Maaspoort members received the police alert, one private message each.
    for member in ("els@bewoners.nl", "joost@bewoners.nl", "fatima@bewoners.nl"):
        assert f"to {member}" in out
    assert "to wijkagent@politie.nl" in out  # the resident's report passed to the police
    assert "piet@bewoners.nl" not in out  # Empel was not concerned
    assert elapsed < 60, f"the demo took {elapsed:.0f} s"


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relay.cli.main", "demo", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def without_tokens(text: str) -> str:
    """The narration without what differs by design between runs: tokens, ports, times."""
    return re.sub(r"[a-z0-9]{16}|127\.0\.0\.1:\d+|Done in [\d.]+ s|\d\d:\d\d", "~", text)


def test_demo_keep_reads_as_a_story_and_runs_again(dovecot_server: object, tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    first, second = run_demo("--keep", str(folder)), run_demo("--keep", str(folder))
    assert first.returncode == 0 and second.returncode == 0, second.stdout + second.stderr
    assert " INFO " not in first.stdout and first.stderr == ""  # narration only: the log is a file
    assert (folder / "binrelay.log").read_text().count(" INFO ") > 0
    assert without_tokens(first.stdout) == without_tokens(second.stdout)  # the same story, in the same order
    # The edited, anonymised resident alert is shown as a member received it.
    assert "Er probeerde zojuist iemand autoportieren te openen" in first.stdout
    assert "Groetjes Els" not in first.stdout.split("received: [Maaspoort] Verdachte situatie")[1]
    # It ends with commands that show something, and they do.
    config = folder / "binrelay.toml"
    for command in (["status"], ["queue", "show", "2"], ["members", "list"]):
        assert f"binrelay --config {config} {' '.join(command)}" in first.stdout
        shown = subprocess.run([sys.executable, "-m", "relay.cli.main", "--config", str(config), *command],
                               capture_output=True, text=True, timeout=60, check=False)
        assert shown.returncode == 0 and shown.stdout.strip(), shown.stderr


def test_demo_will_not_clear_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    result = run_demo("--keep", str(tmp_path))
    assert result.returncode == 2 and "holds other files" in result.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me"
