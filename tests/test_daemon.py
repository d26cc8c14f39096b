"""`binrelay run` as a process: it works the mailbox, reloads on SIGHUP, stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.devservers.dovecot import PrivateDovecot
from relay.devservers.stack import LoopbackStack, compose
from relay.service.clock import FrozenClock
from tests.e2e import ANNA, MAASPOORT, make_stack

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

RULES_BEFORE = '[category.vandalism]\nstrong = ["bekladderd"]\n'
RULES_AFTER = '[category.vandalism]\nstrong = ["bekladderd", "omgekieperd"]\n'


@pytest.fixture
def running(tmp_path: Path, dovecot_server: PrivateDovecot, clock: FrozenClock) -> Iterator[tuple[LoopbackStack, subprocess.Popen[str], Path]]:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_BEFORE)
    stack = make_stack(tmp_path, dovecot_server, clock, config={"rules": {"path": str(rules)}})
    process = subprocess.Popen(
        [sys.executable, "-m", "relay.cli.main", "--config", str(stack.config_path), "run"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    yield stack, process, rules
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    stack.stop()


def wait_for_requests(stack: LoopbackStack, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(stack.approval_requests(ANNA)) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"no {count} approval requests within {timeout} s")


def test_daemon_works_reloads_on_sighup_and_stops_on_sigterm(
    running: tuple[LoopbackStack, subprocess.Popen[str], Path],
) -> None:
    stack, process, rules = running
    stack.mail_in(compose(sender=MAASPOORT[0], subject="tuinkabouters",
                          body="In de voortuin aan de Marathonloop zijn alle tuinkabouters omgekieperd."))
    wait_for_requests(stack, 1)
    assert "Vernieling" not in str(stack.approval_requests(ANNA)[0]["Subject"])

    rules.write_text(RULES_AFTER)
    process.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    stack.mail_in(compose(sender=MAASPOORT[1], subject="ook hier",
                          body="Ook bij ons aan de Marathonloop zijn de tuinkabouters omgekieperd!"))
    wait_for_requests(stack, 2)
    assert "Vernieling" in str(stack.approval_requests(ANNA)[1]["Subject"])

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "reloaded rules" in output
    assert "stopping" in output
