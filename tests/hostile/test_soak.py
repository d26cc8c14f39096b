"""The soak benchmark in its short mode: nothing lost, nothing twice, memory flat."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relay.devservers.dovecot import PrivateDovecot

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.dovecot
def test_short_soak(dovecot_server: PrivateDovecot) -> None:  # the fixture skips without Dovecot
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--seconds", "20", "--rate", "6"],
        capture_output=True, text=True, timeout=240, check=False,
    )
    out = result.stdout
    assert "lost copies: 0, duplicated copies: 0" in out, out + result.stderr[-3000:]
    assert "(lost: 0)" in out, out
    assert result.returncode == 0, out
