"""A private Dovecot IMAP server on loopback, for tests, benchmarks and the demo.

``PrivateDovecot`` writes a standalone configuration into a fresh temporary
directory and runs ``dovecot -F`` (foreground, its own process group) on a free
127.0.0.1 port: plaintext login allowed, a passwd-file with test users, Maildir
storage, IDLE/MOVE/UIDPLUS offered unless ``without`` removes them from the
advertised capabilities. Under root the mail belongs to ``nobody``; otherwise
everything runs as the current user.

    with PrivateDovecot() as dovecot:
        password = dovecot.add_user("bin@example.org")
        dovecot.deliver("bin@example.org", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
"""

from __future__ import annotations

import atexit
import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Self

from imapclient import IMAPClient

from relay.devservers.files import PrivateServer

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 3
NOBODY_UID = NOBODY_GID = 65534

# Dovecot 2.3's post-login capabilities; ``without`` removes names from this list.
DEFAULT_CAPABILITIES = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY "
    "THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL "
    "CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 "
    "CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS "
    "BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ "
    "NOTIFY SPECIAL-USE"
).split()


class DovecotUnavailable(RuntimeError):
    """The dovecot binary is missing."""


class DovecotStartError(RuntimeError):
    """Dovecot was found but did not start; the message ends with its log."""


def find_dovecot() -> Path | None:
    """``$BINRELAY_DOVECOT``, /usr/sbin/dovecot or ``dovecot`` on PATH."""
    candidates = [os.environ.get("BINRELAY_DOVECOT"), "/usr/sbin/dovecot", shutil.which("dovecot")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateDovecot(PrivateServer):
    """One private Dovecot; ``start()`` (or ``with``), then ``stop()``.

    ``without`` names capabilities not to advertise (e.g. ``{"IDLE", "MOVE"}``)
    so clients take their polling and COPY+EXPUNGE paths; ``capabilities``
    replaces the advertised list altogether (e.g. a bare ``["IMAP4rev1"]``).
    """

    log_name = "dovecot.log"

    def __init__(
        self,
        without: Iterable[str] = (),
        *,
        capabilities: Iterable[str] | None = None,
        tls: bool = False,
        inbox_prefix: str | None = None,
    ) -> None:
        removed = {name.upper() for name in without}
        offered = DEFAULT_CAPABILITIES if capabilities is None else [c.upper() for c in capabilities]
        self.capabilities = [c for c in offered if c not in removed]
        self.tls = tls  # also STARTTLS on ``port`` and implicit TLS on ``tls_port``
        # "INBOX.": every personal folder under INBOX with "." between, as Courier and Debian's Cyrus have it.
        self.inbox_prefix = inbox_prefix
        self.port: int | None = None
        self.tls_port: int | None = None
        self.workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._passwords: dict[str, str] = {}
        self._binary: Path | None = None

    # -- public API ---------------------------------------------------------

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Write the configuration (first time) and start on a free port (kept on restart)."""
        if self.running:
            return self
        if self.workdir is None:
            self._binary = find_dovecot()
            if self._binary is None:
                raise DovecotUnavailable("dovecot not found (apt-get install dovecot-imapd)")
            self._prepare_workdir()
            atexit.register(self.remove)
        if self.port is not None:
            self._spawn_and_wait()
            return self
        for attempt in range(PORT_ATTEMPTS):
            self.port = free_port()
            self.tls_port = free_port() if self.tls else None
            try:
                self._spawn_and_wait()
                return self
            except DovecotStartError:
                self._terminate(signal.SIGKILL)
                if attempt == PORT_ATTEMPTS - 1:
                    raise
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a bounded wait); mail stays."""
        self._terminate(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the whole server (master and children): a crash.

        A killed imap process can leave an empty ``dovecot-uidlist.lock`` that
        Dovecot only overrides after two minutes; those are removed so the next
        ``start()`` serves at once (tests are about the client's recovery).
        """
        self._terminate(signal.SIGKILL)
        if self.workdir is not None:
            for lock in (self.workdir / "mail").rglob("dovecot-uidlist.lock"):
                lock.unlink(missing_ok=True)

    def restart(self) -> None:
        """Stop and start again on the same port with the same mail."""
        self.stop()
        self.start()

    def remove(self) -> None:
        """Stop and delete every file."""
        atexit.unregister(self.remove)
        self.kill()
        workdir, self.workdir = self.workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        self.port = None

    def add_user(self, username: str, password: str | None = None) -> str:
        """Add a login (Dovecot re-reads the passwd-file on change); returns the password."""
        if "@" not in username or ":" in username or "/" in username:
            raise ValueError(f"bad test user name {username!r}")
        assert self.workdir is not None, "start() first"
        password = password or secrets.token_hex(8)
        self._passwords[username] = password
        uid, gid = self._mail_owner()
        # One passwd-file per user: Dovecot caches a shared file by mtime and size,
        # so a user added in the same second with the same line length stays unseen.
        line = f"{username}:{{PLAIN}}{password}:{uid}:{gid}::{self.workdir / 'mail' / username}\n"
        users_file = self.workdir / "passwd" / username
        tmp = users_file.with_name(f".{username}.tmp")
        tmp.write_text(line)
        tmp.chmod(0o644)
        os.replace(tmp, users_file)
        return password

    def password(self, username: str) -> str:
        return self._passwords[username]

    def client(self, username: str, timeout: float = 10.0) -> IMAPClient:
        """A logged-in IMAPClient for ``username``."""
        assert self.port is not None, "start() first"
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=timeout)
        try:
            client.login(username, self._passwords[username])
        except BaseException:
            client.shutdown()
            raise
        return client

    def deliver(self, username: str, raw: bytes, folder: str = "INBOX") -> None:
        """Put one message into ``folder`` (APPEND)."""
        self.deliver_many(username, [raw], folder)

    def deliver_many(self, username: str, raws: Iterable[bytes], folder: str = "INBOX") -> int:
        """APPEND every message over one connection; returns how many."""
        client = self.client(username)
        count = 0
        try:
            for raw in raws:
                client.append(folder, raw)
                count += 1
        finally:
            _logout(client)
        return count

    def maildir(self, username: str, folder: str = "INBOX") -> Path:
        """The Maildir folder on disk (``INBOX`` is the user's root)."""
        assert self.workdir is not None
        root = self.workdir / "mail" / username
        return root if folder.upper() == "INBOX" else root / f".{folder}"

    def close(self) -> None:
        self.remove()

    # -- steps ----------------------------------------------------------------

    def _mail_owner(self) -> tuple[int, int]:
        if os.geteuid() == 0:
            return NOBODY_UID, NOBODY_GID
        return os.getuid(), os.getgid()

    @property
    def ca_file(self) -> Path:
        """The self-signed certificate (for 127.0.0.1) that a TLS client must trust."""
        assert self.workdir is not None and self.tls, "PrivateDovecot(tls=True) and start() first"
        return self.workdir / "cert.pem"

    def _tls_settings(self) -> list[str]:
        if not self.tls:
            return ["ssl = no"]
        assert self.workdir is not None
        return [
            "ssl = yes",
            f"ssl_cert = <{self.workdir / 'cert.pem'}",
            f"ssl_key = <{self.workdir / 'key.pem'}",
        ]

    def _make_certificate(self) -> None:
        assert self.workdir is not None
        openssl = shutil.which("openssl")
        if openssl is None:
            raise DovecotUnavailable("openssl is needed for PrivateDovecot(tls=True)")
        subprocess.run(
            [
                openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", str(self.workdir / "key.pem"), "-out", str(self.workdir / "cert.pem"),
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=True,
        )  # fmt: skip
        (self.workdir / "key.pem").chmod(0o600)

    def _prepare_workdir(self) -> None:
        base = "/tmp" if os.geteuid() == 0 else None  # auth workers must reach it
        self.workdir = Path(tempfile.mkdtemp(prefix="binrelay-dovecot-", dir=base))
        self.workdir.chmod(0o755)
        for sub in ("run", "state", "mail", "passwd"):
            (self.workdir / sub).mkdir(mode=0o755)
        if self.tls:
            self._make_certificate()
        uid, gid = self._mail_owner()
        if os.geteuid() == 0:
            os.chown(self.workdir / "mail", uid, gid)

    def _namespace_settings(self) -> list[str]:
        if self.inbox_prefix is None:
            return []
        separator = self.inbox_prefix[-1] if self.inbox_prefix else "."
        return [f"namespace inbox {{\n  inbox = yes\n  prefix = {self.inbox_prefix}\n  separator = {separator}\n}}"]

    def _config_text(self) -> str:
        assert self.workdir is not None and self.port is not None
        tmp = self.workdir
        lines = [
            "protocols = imap",
            "listen = 127.0.0.1",
            *self._tls_settings(),
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            f"base_dir = {tmp}/run",
            f"state_dir = {tmp}/state",
            f"log_path = {tmp}/dovecot.log",
            f"mail_location = maildir:{tmp}/mail/%u",
            "mail_fsync = never",  # a throw-away test server
            "mail_max_userip_connections = 200",
            "first_valid_uid = 1",
            f"passdb {{\n  driver = passwd-file\n  args = {tmp}/passwd/%u\n}}",
            f"userdb {{\n  driver = passwd-file\n  args = {tmp}/passwd/%u\n}}",
            "service imap-login {",
            f"  inet_listener imap {{\n    port = {self.port}\n  }}",
            f"  inet_listener imaps {{\n    port = {self.tls_port}\n    ssl = yes\n  }}" if self.tls else "",
            "}",
            f"protocol imap {{\n  imap_capability = {' '.join(self.capabilities)}\n}}",
            *self._namespace_settings(),
        ]
        if os.geteuid() != 0:
            user = pwd.getpwuid(os.getuid()).pw_name
            group = grp.getgrgid(os.getgid()).gr_name
            lines += [
                f"default_internal_user = {user}",
                f"default_internal_group = {group}",
                f"default_login_user = {user}",
                f"first_valid_gid = {min(os.getgid(), 1)}",
                # chroot needs root: without it the login and helper services die.
                "service imap-login {\n  chroot =\n}",
                "service anvil {\n  chroot =\n}",
            ]
        return "\n".join(lines) + "\n"

    def _spawn_and_wait(self) -> None:
        assert self.workdir is not None and self._binary is not None and self.port is not None
        config = self.workdir / "dovecot.conf"
        config.write_text(self._config_text())
        log = open(self.workdir / "dovecot.stdout", "ab")  # noqa: SIM115 - handed to the child
        try:
            self._process = subprocess.Popen(
                [str(self._binary), "-F", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() takes all children
            )
        finally:
            log.close()
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        assert self._process is not None and self.port is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DovecotStartError(
                    f"dovecot exited with {self._process.returncode}:\n{self._all_logs()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=2) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return
            except OSError as error:
                last_error = error
            time.sleep(0.02)
        raise DovecotStartError(
            f"dovecot did not greet within {START_TIMEOUT_S:.0f} s ({last_error}):\n{self._all_logs()}"
        )

    def _all_logs(self) -> str:
        assert self.workdir is not None
        try:
            stdout = (self.workdir / "dovecot.stdout").read_text(errors="replace")
        except OSError:
            stdout = ""
        return stdout[-2000:] + "\n" + self.log_tail()

    def _terminate(self, first_signal: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        _signal_group(process, first_signal)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT_S)
        if first_signal == signal.SIGKILL:
            _signal_group(process, signal.SIGKILL)  # children left behind by the master
        self._wait_port_free()

    def _wait_port_free(self) -> None:
        """After a stop the listener must be gone before a restart binds it again."""
        if self.port is None:
            return
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
            except OSError:
                return
            time.sleep(0.02)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def _logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - best effort on a test helper's way out
        client.shutdown()
