"""`binrelay demo`, as a newcomer runs it: the whole flow, narrated, in under a minute."""

from __future__ import annotations

import subprocess
import sys
import time

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
