"""A private PostgreSQL server for the demo, the tests and the benchmarks.

When no DATABASE_URL is given, pyqueue runs its own server from the locally
installed PostgreSQL programs, in a data directory of its own, listening on a
free loopback port only. PostgreSQL refuses to run as root, so under root the
server runs as the unprivileged `postgres` user (or `nobody`), which then owns
the directory.
"""

from __future__ import annotations

import getpass
import os
import pwd
import re
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


def default_base_dir() -> Path:
    """Where the CLI keeps its private server between calls.

    The user's state directory; under root a system path instead, because the
    unprivileged server user cannot enter /root.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/pyqueue/server")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "pyqueue" / "server"


def _server_user() -> str | None:
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
    """A PostgreSQL server in `base_dir` (data in base_dir/data), on loopback."""

    def __init__(self, base_dir: Path, settings: Mapping[str, str] | None = None) -> None:
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.log_file = base_dir / "server.log"
        self.settings = dict(settings or {})
        self._user = _server_user()
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
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            shutil.chown(self.base_dir, user=self._user)
            reachable = subprocess.run(
                ["runuser", "-u", self._user, "--", "test", "-w", str(self.base_dir)]
            )
            if reachable.returncode != 0:
                raise ServerError(
                    f"the server runs as user {self._user}, who cannot reach {self.base_dir}: "
                    "choose a data directory whose parent folders it may enter"
                )
        result = self._run(
            "initdb", "-D", str(self.data_dir), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        self._check(result, "create")

    def port(self) -> int | None:
        """The port of the running server, or None when it is not running."""
        if self._run("pg_ctl", "status", "-D", str(self.data_dir)).returncode != 0:
            return None
        lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        return int(lines[3])

    def url(self, dbname: str = DATABASE) -> str:
        port = self.port()
        if port is None:
            raise ServerError(f"the private PostgreSQL in {self.base_dir} is not running")
        return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{dbname}"

    def start(self) -> str:
        """Start the server (creating it first if needed) unless it runs; return its URL."""
        if not (self.data_dir / "PG_VERSION").exists():
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
                "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
                "-l", str(self.log_file), "-o", flags,
            )  # fmt: skip
            self._check(result, "start")
        self._create_database()
        return self.url()

    def _create_database(self) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if conn.execute(queries.DATABASE_EXISTS, [DATABASE]).fetchone() is None:
                conn.execute(queries.create_database(DATABASE))

    def stop(self) -> None:
        if self.port() is not None:
            result = self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))
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
