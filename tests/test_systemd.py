"""The service unit passes `systemd-analyze verify`, and the daemon speaks sd_notify."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relay.devservers.dovecot import PrivateDovecot
from relay.devservers.stack import LoopbackStack
from relay.service import sdnotify
from tests.fixtures.common import require_or_skip

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "binrelay.service"


def test_unit_has_the_hardening_a_reviewer_expects() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "DynamicUser=yes", "StateDirectory=binrelay",
                 "LoadCredential=", "ProtectSystem=strict", "ProtectHome=yes", "NoNewPrivileges=yes",
                 "PrivateTmp=yes", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                 "SystemCallFilter=@system-service", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in text, line


def test_the_units_documentation_is_where_the_guide_puts_it() -> None:
    documentation = next(line for line in UNIT.read_text().splitlines() if line.startswith("Documentation="))
    target = documentation.removeprefix("Documentation=file://")
    guide = (ROOT / "docs" / "operating.md").read_text()
    assert target.startswith("/opt/binrelay/docs/") and "cp -r docs /opt/binrelay/docs" in guide
    assert (ROOT / "docs" / Path(target).name).exists()


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        require_or_skip("systemd-analyze", "BINRELAY_REQUIRE_SYSTEMD")
    # verify checks that ExecStart exists: point it at this checkout's binrelay.
    binrelay = Path(sys.executable).with_name("binrelay")
    unit = tmp_path / "binrelay.service"
    unit.write_text(UNIT.read_text().replace("/opt/binrelay/bin/binrelay", str(binrelay)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "binrelay.service" not in result.stdout + result.stderr, result.stdout + result.stderr


# What binrelay cannot give up: it talks to its servers and to its AF_UNIX notify socket; ProtectClock
# allows reading the RTC (DeviceAllow).
NEEDED = ("PrivateNetwork=", "RestrictAddressFamilies=~AF_(INET|INET6)", "RestrictAddressFamilies=~AF_UNIX",
          "IPAddressDeny=", "RootDirectory=/RootImage=", "DeviceAllow=")


def test_systemd_analyze_security_leaves_open_only_what_binrelay_needs(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        require_or_skip("systemd-analyze", "BINRELAY_REQUIRE_SYSTEMD")
    unit = tmp_path / "binrelay.service"
    unit.write_text(UNIT.read_text().replace("/opt/binrelay/bin/binrelay", str(Path(sys.executable).with_name("binrelay"))))
    result = subprocess.run([analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True,
                            timeout=60, check=False)
    report = result.stdout + result.stderr
    open_items = [line.split()[1] for line in report.splitlines() if line.startswith("✗")]
    assert open_items and set(open_items) <= set(NEEDED), report


def test_notify_sends_to_a_path_and_an_abstract_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for address in (str(tmp_path / "notify"), f"@binrelay-test-{os.getpid()}"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
            server.bind(address if not address.startswith("@") else "\0" + address[1:])
            monkeypatch.setenv("NOTIFY_SOCKET", address)
            assert sdnotify.notify("READY=1")
            assert server.recv(100) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sdnotify.notify("READY=1")


@pytest.mark.dovecot
@pytest.mark.slow
def test_daemon_under_a_fake_notify_socket(tmp_path: Path, dovecot_server: PrivateDovecot) -> None:
    socket_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server, \
            LoopbackStack(tmp_path / "stack", dovecot=dovecot_server, mailbox_user="bin-notify@bin-demo.nl") as stack:
        server.bind(str(socket_path))
        server.settimeout(1.0)
        environment = {**os.environ, "NOTIFY_SOCKET": str(socket_path), "WATCHDOG_USEC": "2000000"}
        process = subprocess.Popen(
            [sys.executable, "-m", "relay.cli.main", "--config", str(stack.config_path), "run"],
            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            states = receive_until(server, lambda seen: "READY=1" in seen and seen.count("WATCHDOG=1") >= 2, 30)
            assert "READY=1" in states and states.count("WATCHDOG=1") >= 2, states
            process.send_signal(signal.SIGTERM)
            states += receive_until(server, lambda seen: "STOPPING=1" in seen, 30)
            assert "STOPPING=1" in states
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def receive_until(server: socket.socket, done: object, seconds: float) -> list[str]:
    assert callable(done)
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done(seen):
        try:
            seen.append(server.recv(200).decode())
        except TimeoutError:
            continue
    return seen
