"""A private PostgreSQL server on loopback, for tests, benchmarks and the demo.

``PrivatePostgres`` runs ``initdb`` into a fresh temporary directory, starts
``postgres`` on a free 127.0.0.1 port (its unix socket stays inside that
directory) with trust authentication, and removes everything on ``stop()``.
PostgreSQL refuses to run as root, so under uid 0 the server runs as the
``postgres`` system user, which then owns the temporary directory.

    with PrivatePostgres() as pg:
        engine = make_engine(pg.create_database("test_1"))
"""

from __future__ import annotations

import atexit
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypedDict

import psycopg

from relay.devservers.files import PrivateServer

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 60.0
PORT_ATTEMPTS = 3
SERVICE_USER = "postgres"
_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Settings for a throw-away server: durability off, small, quiet.
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "timezone": "UTC",
}


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries (or the ``postgres`` user under root) are missing."""


class PostgresStartError(RuntimeError):
    """The server was found but did not start; the message ends with its log."""


@dataclass(frozen=True)
class _RunAs:
    """Who runs the server: the current user, or the service user under root."""

    uid: int | None = None
    gid: int | None = None

    @property
    def switches(self) -> bool:
        return self.uid is not None


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``, or None.

    Order: ``$BINRELAY_PG_BINDIR``, the newest ``/usr/lib/postgresql/*/bin``
    (Debian), then ``initdb`` on ``PATH``.
    """
    candidates: list[Path] = []
    if env := os.environ.get("BINRELAY_PG_BINDIR"):
        candidates.append(Path(env))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: int(p.name), reverse=True)]
    if on_path := shutil.which("initdb"):
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if _is_executable(folder / "initdb") and _is_executable(folder / "postgres"):
            return folder
    return None


def available() -> bool:
    """True when a private server can be started here."""
    try:
        _run_as()
    except PostgresUnavailable:
        return False
    return find_bindir() is not None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _run_as() -> _RunAs:
    if os.geteuid() != 0:
        return _RunAs()
    try:
        entry = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root, but there is no {SERVICE_USER!r} user to run PostgreSQL as"
        ) from None
    return _RunAs(entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _world_traversable(folder: Path) -> bool:
    """Can another user reach entries below ``folder`` (x bit on every ancestor)?"""
    for part in [folder, *folder.parents]:
        try:
            if not part.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _base_tempdir(run_as: _RunAs) -> str:
    base = tempfile.gettempdir()
    if run_as.switches and not _world_traversable(Path(base)):
        return "/tmp"
    return base


class PrivatePostgres(PrivateServer):
    """One private PostgreSQL server; call ``start()`` (or use ``with``) then ``stop()``."""

    def __init__(self, user: str = "binrelay", database: str = "binrelay") -> None:
        _check_name(database)
        self.user = user
        self.database = database
        self.port: int | None = None
        self.workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._run_as = _RunAs()
        self._bindir: Path | None = None

    # -- public API ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the default database (``postgresql+psycopg://...``)."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        if self.port is None:
            raise RuntimeError("PrivatePostgres is not started")
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def start(self) -> Self:
        """initdb, start the server and create the default database; bounded waits."""
        if self.running:
            return self
        bindir = find_bindir()
        if bindir is None:
            raise PostgresUnavailable("PostgreSQL server binaries (initdb, postgres) not found")
        self._bindir = bindir
        self._run_as = _run_as()
        self.workdir = Path(
            tempfile.mkdtemp(prefix="binrelay-pg-", dir=_base_tempdir(self._run_as))
        )
        atexit.register(self.stop)
        try:
            self._initdb()
            self._start_on_free_port()
            self.create_database(self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (optionally copied from ``template``); returns its URL."""
        _check_name(name)
        sql = f'CREATE DATABASE "{name}"'
        if template is not None:
            _check_name(template)
            sql += f' TEMPLATE "{template}"'
        self.execute(sql)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting whoever still uses it."""
        _check_name(name)
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def execute(self, sql: str) -> None:
        """Run one statement as the superuser in the ``postgres`` database (autocommit)."""
        with self._admin_connection() as conn:
            conn.execute(sql.encode())

    def stop(self) -> None:
        """Shut the server down (fast, then immediate, then kill) and remove its files."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None:
            _shutdown(process)
        workdir, self.workdir = self.workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        self.port = None

    def close(self) -> None:
        self.stop()

    # -- steps ----------------------------------------------------------------

    def _initdb(self) -> None:
        assert self.workdir is not None and self._bindir is not None
        (self.workdir / "socket").mkdir()
        if self._run_as.switches:
            _chown_tree(self.workdir, self._run_as)
        args = [
            str(self._bindir / "initdb"),
            "--pgdata", str(self.workdir / "data"),
            "--username", self.user,
            "--auth", "trust",
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        result = subprocess.run(
            args,
            **self._popen_kwargs(),
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise PostgresStartError(f"initdb failed ({result.returncode}):\n{output}")

    def _start_on_free_port(self) -> None:
        for attempt in range(PORT_ATTEMPTS):
            self.port = free_port()
            self._process = self._spawn_server()
            try:
                self._wait_until_ready()
                return
            except PostgresStartError:
                port_taken = "could not bind" in self.log_tail() or "in use" in self.log_tail()
                if not port_taken or attempt == PORT_ATTEMPTS - 1:
                    raise
                process, self._process = self._process, None
                _shutdown(process)

    def _spawn_server(self) -> subprocess.Popen[bytes]:
        assert self.workdir is not None and self._bindir is not None and self.port is not None
        args = [
            str(self._bindir / "postgres"),
            "-D", str(self.workdir / "data"),
            "-p", str(self.port),
            "-k", str(self.workdir / "socket"),
        ]  # fmt: skip
        for key, value in SERVER_SETTINGS.items():
            args += ["-c", f"{key}={value}"]
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            return subprocess.Popen(
                args,
                **self._popen_kwargs(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to handle
            )
        finally:
            log.close()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise PostgresStartError(
                    f"postgres exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            try:
                with self._admin_connection(connect_timeout=2):
                    return
            except psycopg.OperationalError as error:
                last_error = error
                time.sleep(0.02)
        raise PostgresStartError(
            f"postgres did not accept connections within {START_TIMEOUT_S:.0f} s "
            f"({last_error}):\n{self.log_tail()}"
        )

    def _admin_connection(self, connect_timeout: int = 5) -> psycopg.Connection[tuple[object, ...]]:
        if self.port is None:
            raise RuntimeError("PrivatePostgres is not started")
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            dbname="postgres",
            autocommit=True,
            connect_timeout=connect_timeout,
        )

    def _popen_kwargs(self) -> _ChildOptions:
        assert self.workdir is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        switches = self._run_as.switches
        return _ChildOptions(
            cwd=str(self.workdir),
            env=env,
            user=self._run_as.uid,
            group=self._run_as.gid,
            extra_groups=[] if switches else None,
        )


class _ChildOptions(TypedDict):
    """How initdb and postgres are started: as whom, where, with what environment."""

    cwd: str
    env: dict[str, str]
    user: int | None
    group: int | None
    extra_groups: list[int] | None


def _check_name(name: str) -> None:
    if not _DB_NAME.match(name):
        raise ValueError(f"database name {name!r}: use lowercase letters, digits and _")


def _chown_tree(root: Path, run_as: _RunAs) -> None:
    assert run_as.uid is not None and run_as.gid is not None
    os.chown(root, run_as.uid, run_as.gid)
    for path in root.rglob("*"):
        os.chown(path, run_as.uid, run_as.gid)


def _shutdown(process: subprocess.Popen[bytes]) -> None:
    """SIGINT (fast shutdown), then SIGQUIT (immediate), then SIGKILL; bounded."""
    for sig, wait_s in (
        (signal.SIGINT, STOP_TIMEOUT_S),
        (signal.SIGQUIT, 5.0),
        (signal.SIGKILL, 5.0),
    ):
        if process.poll() is not None:
            return
        try:
            if sig == signal.SIGKILL:  # the backends too: the server runs in its own session
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
            process.wait(timeout=wait_s)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
