"""PrivateDovecot itself: restart keeps port and mail, kill is a crash, capabilities, non-root."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from relay.devservers.dovecot import PrivateDovecot, find_dovecot
from relay.ingest.imap import ImapSource
from relay.ingest.store import Ingestor
from relay.service.clock import FrozenClock
from tests.fixtures.dovecot import AccountFactory, started_or_skip

pytestmark = pytest.mark.dovecot

ROOT = Path(__file__).resolve().parent.parent


def inbox_count(server: PrivateDovecot, user: str) -> int:
    client = server.client(user)
    try:
        return int(client.select_folder("INBOX", readonly=True)[b"EXISTS"])
    finally:
        client.logout()


def test_restart_and_kill_keep_port_and_mail(own_dovecot: PrivateDovecot) -> None:
    own_dovecot.add_user("a@example.org")
    own_dovecot.deliver_many("a@example.org", [b"Subject: %d\r\n\r\nx\r\n" % n for n in range(3)])
    port = own_dovecot.port
    own_dovecot.restart()
    assert own_dovecot.port == port and inbox_count(own_dovecot, "a@example.org") == 3
    own_dovecot.kill()
    assert not own_dovecot.running
    with pytest.raises(OSError):
        own_dovecot.client("a@example.org", timeout=2)
    own_dovecot.start()
    assert own_dovecot.port == port and inbox_count(own_dovecot, "a@example.org") == 3
    assert (own_dovecot.maildir("a@example.org") / "cur").is_dir()


def test_capabilities_can_be_withheld(dovecot_plain_server: PrivateDovecot, make_imap_account: AccountFactory) -> None:
    account = make_imap_account(dovecot_plain_server)
    client = dovecot_plain_server.client(account.username)
    try:
        capabilities = set(client.capabilities())
    finally:
        client.logout()
    assert b"IDLE" not in capabilities and b"MOVE" not in capabilities
    assert b"UIDPLUS" in capabilities


def test_users_added_in_the_same_second_can_all_log_in(own_dovecot: PrivateDovecot) -> None:
    users = [f"u{n}@example.org" for n in range(5)]
    for user in users:
        own_dovecot.add_user(user)
    for user in users:
        own_dovecot.deliver(user, b"Subject: hoi\r\n\r\nx\r\n")
        assert inbox_count(own_dovecot, user) == 1


SNIPPET = textwrap.dedent(
    """
    from relay.devservers.dovecot import PrivateDovecot
    with PrivateDovecot() as server:
        server.add_user("a@example.org")
        server.deliver("a@example.org", b"Subject: x\\r\\n\\r\\nbody\\r\\n")
        client = server.client("a@example.org")
        print(client.select_folder("INBOX")[b"EXISTS"])
        client.logout()
        server.kill()
        server.start()
    """
)


def _reachable_by_others(path: Path) -> bool:
    """Whether a user without rights of its own can reach ``path``: every folder on the way searchable."""
    return all(folder.stat().st_mode & 0o001 for folder in (path, *path.parents) if folder.exists())


@pytest.mark.skipif(os.geteuid() != 0, reason="the suite itself runs unprivileged here")
def test_runs_as_an_unprivileged_user() -> None:
    """Under root the suite cannot see the non-root path; run it as ``nobody``."""
    runuser, system_python = shutil.which("runuser"), Path("/usr/bin/python3")
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no nobody user")
    if runuser is None or not system_python.exists() or find_dovecot() is None:
        pytest.skip("needs runuser, /usr/bin/python3 and dovecot")
    for needed in (ROOT, site):
        if not _reachable_by_others(needed):  # a clone under /root (0700): nobody cannot import it
            pytest.skip(f"nobody cannot reach {needed}: a folder above it is not searchable by others")
    version = subprocess.run(
        [str(system_python), "-c", "import sys; print(sys.version_info[:2])"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.strip()
    if version != str(sys.version_info[:2]):
        pytest.skip(f"system python {version} cannot load this virtualenv's packages")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{site}:{ROOT}", "HOME": "/tmp", "TMPDIR": "/tmp"}
    result = subprocess.run(
        [runuser, "-u", "nobody", "--", str(system_python), "-c", SNIPPET],
        capture_output=True, text=True, timeout=60, env=env, cwd="/tmp", check=False,
    )
    if "Permission denied" in result.stderr and "site-packages" in result.stderr:
        pytest.skip("nobody cannot read the virtualenv")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "1"


def test_a_bare_server_takes_the_copy_and_expunge_path(
    make_imap_account: AccountFactory, sessions: sessionmaker[Session], clock: FrozenClock
) -> None:
    """Neither MOVE nor UIDPLUS nor IDLE: COPY + \\Deleted + EXPUNGE and polling still work."""
    server = started_or_skip(PrivateDovecot(capabilities=["IMAP4rev1", "LITERAL+"]))
    try:
        account = make_imap_account(server, poll_seconds=1)
        client = server.client(account.username)
        assert {b"MOVE", b"UIDPLUS", b"IDLE"}.isdisjoint(client.capabilities())
        client.logout()
        server.deliver_many(account.username, [b"Subject: %d\r\n\r\nx\r\n" % n for n in range(7)])
        source = ImapSource(account.config, Ingestor(sessions, clock, 10**7), sessions, clock)
        assert source.run_once() == 7
        assert inbox_count(server, account.username) == 0
        source.close()
    finally:
        server.remove()
