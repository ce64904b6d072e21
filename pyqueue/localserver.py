"""A private PostgreSQL server for the demo, the tests and the benchmarks.

When no DATABASE_URL is given, pyqueue runs its own server from the locally
installed PostgreSQL programs, in a data directory of its own, listening on a
free loopback port only. PostgreSQL refuses to run as root, so under root the
server runs as the unprivileged `postgres` user (or `nobody`), which then owns
the directory.

Loopback is shared by every user of the machine, so the server asks for a
password (scram-sha-256) on every connection: a random secret made when the
server is created, kept in a 0600 file in the data directory (itself 0700), so
only its owner (and root) can read it. The URL that `url()` gives carries it.
"""

from __future__ import annotations

import getpass
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import psycopg

from pyqueue import queries
from pyqueue.errors import PyqueueError

SUPERUSER = "postgres"
DATABASE = "pyqueue"
SECRET_FILE = "pyqueue-superuser.secret"
# Only loopback TCP, only with the password; the Unix socket is switched off.
HBA_RULES = """\
# Written by pyqueue: every connection needs the superuser's password.
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
local all all scram-sha-256
"""


class ServerError(PyqueueError):
    """The private server could not be found, created or started."""


def find_bin_dir() -> Path:
    """The folder of initdb and pg_ctl: on PATH first, then Debian's, newest first."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.name)],
        reverse=True,
    )
    for candidate in candidates:
        if (candidate / "pg_ctl").exists() and (candidate / "initdb").exists():
            return candidate
    raise ServerError(
        "no PostgreSQL server programs found (pg_ctl, initdb): install them with "
        "`apt-get install postgresql`, or set DATABASE_URL to use a running server"
    )


def default_data_dir() -> Path:
    """Where the CLI keeps its private server between calls.

    The user's state directory; under root a system path instead, because the
    unprivileged server user cannot enter /root.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/pyqueue/server")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "pyqueue" / "server"


def server_user() -> str | None:
    """The user to run the server as when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise ServerError("running as root and no unprivileged user (postgres, nobody) exists")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalServer:
    """A PostgreSQL server in `data_dir`, on loopback.

    data_dir is the private server's folder (what `pyqueue --data-dir` names);
    PostgreSQL's own data directory (PGDATA) is `pgdata` inside it.
    """

    def __init__(self, data_dir: Path, settings: Mapping[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "data"
        self.log_file = data_dir / "server.log"
        self.settings = dict(settings or {})
        self._user = server_user()
        self._bin = find_bin_dir()

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self._bin / program), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=False)

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()
            log = ""
            if self.log_file.exists():
                log = "\n" + "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise ServerError(f"could not {what} the private PostgreSQL: {detail}{log}")

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            shutil.chown(self.data_dir, user=self._user)
            reachable = subprocess.run(
                ["runuser", "-u", self._user, "--", "test", "-w", str(self.data_dir)]
            )
            if reachable.returncode != 0:
                raise ServerError(
                    f"the server runs as user {self._user}, who cannot reach {self.data_dir}: "
                    "choose a data directory whose parent folders it may enter"
                )
        secret = secrets.token_urlsafe(32)
        password_file = self.data_dir / ".initdb-password"
        self._write_private(password_file, secret)
        try:
            result = self._run(
                "initdb", "-D", str(self.pgdata), "-U", SUPERUSER, f"--pwfile={password_file}",
                "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8",
            )  # fmt: skip
        finally:
            password_file.unlink(missing_ok=True)
        self._check(result, "create")
        (self.pgdata / "pg_hba.conf").write_text(HBA_RULES)
        self._write_private(self.pgdata / SECRET_FILE, secret)

    def _write_private(self, path: Path, text: str) -> None:
        """Write a file only the server's user may read (0600, created afresh)."""
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(text)
        if self._user is not None:
            shutil.chown(path, user=self._user)

    def secret(self) -> str:
        """The superuser's password, from the 0600 file in the data directory."""
        try:
            return (self.pgdata / SECRET_FILE).read_text().strip()
        except OSError as error:
            raise ServerError(
                f"cannot read the private server's password ({error.strerror}): "
                f"{self.pgdata / SECRET_FILE} is readable only by the user who created it"
            ) from None

    def _lock(self) -> None:
        """Give a server made by an older pyqueue (trust, no password) a password.

        Such a server still trusts loopback, so we connect without a password
        once, set one, and make pg_hba.conf ask for it from then on.
        """
        secret = secrets.token_urlsafe(32)
        port = self.port()
        trusted = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
        with psycopg.connect(trusted, autocommit=True) as conn:
            conn.execute(queries.set_password(SUPERUSER, secret))
        self._write_private(self.pgdata / SECRET_FILE, secret)
        (self.pgdata / "pg_hba.conf").write_text(HBA_RULES)
        self._check(self._run("pg_ctl", "reload", "-D", str(self.pgdata)), "reload")

    def port(self) -> int | None:
        """The port of the running server, or None when it is not running."""
        if self._run("pg_ctl", "status", "-D", str(self.pgdata)).returncode != 0:
            return None
        lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        return int(lines[3])

    def url(self, dbname: str = DATABASE) -> str:
        port = self.port()
        if port is None:
            raise ServerError(f"the private PostgreSQL in {self.data_dir} is not running")
        return f"postgresql://{SUPERUSER}:{self.secret()}@127.0.0.1:{port}/{dbname}"

    def start(self) -> str:
        """Start the server (creating it first if needed) unless it runs; return its URL."""
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        if self.port() is None:
            options = {
                "listen_addresses": "127.0.0.1",
                "port": str(_free_port()),
                "unix_socket_directories": "''",
                **self.settings,
            }
            flags = " ".join(f"-c {key}={value}" for key, value in options.items())
            result = self._run(
                "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.pgdata),
                "-l", str(self.log_file), "-o", flags,
            )  # fmt: skip
            self._check(result, "start")
        if not (self.pgdata / SECRET_FILE).exists():
            self._lock()
        self._create_database()
        return self.url()

    def _create_database(self) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if conn.execute(queries.DATABASE_EXISTS, [DATABASE]).fetchone() is None:
                conn.execute(queries.create_database(DATABASE))

    def stop(self) -> None:
        if self.port() is not None:
            result = self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.pgdata))
            self._check(result, "stop")


@contextmanager
def temporary_server(settings: Mapping[str, str] | None = None) -> Iterator[LocalServer]:
    """A throwaway server in a new temporary directory, removed on exit."""
    base = Path(tempfile.mkdtemp(prefix=f"pyqueue-{getpass.getuser()}-"))
    server = LocalServer(base, settings)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
