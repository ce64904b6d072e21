"""A primary and a streaming standby on loopback, for the failover drill.

Built with the PostgreSQL programs the tests already use (initdb, pg_ctl,
pg_basebackup -R), run as an unprivileged user when we are root. Every
connection, replication included, needs the superuser's password
(scram-sha-256): loopback is shared by every user of the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from pyqueue.localserver import find_bin_dir, server_user

SUPERUSER = "postgres"
DATABASE = "pyqueue"


class Node:
    """One PostgreSQL server of the pair, in `folder`, listening on 127.0.0.1:`port`."""

    def __init__(self, folder: Path, port: int, password: str) -> None:
        self.folder = folder
        self.pgdata = folder / "data"
        self.port = port
        self.password = password
        self._user = server_user()
        self._bin = find_bin_dir()
        folder.mkdir(parents=True)
        if self._user is not None:
            shutil.chown(folder, user=self._user)

    def run(self, program: str, *args: str, env: dict[str, str] | None = None) -> None:
        command = [str(self._bin / program), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120
        )
        if result.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed: {result.stderr or result.stdout}\n{tail}")

    def initdb(self) -> None:
        secret_file = self.folder / "password"
        secret_file.write_text(self.password)
        if self._user is not None:
            shutil.chown(secret_file, user=self._user)
        self.run(
            "initdb", "-D", str(self.pgdata), "-U", SUPERUSER, f"--pwfile={secret_file}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        secret_file.unlink()

    def clone_of(self, primary: Node) -> None:
        """This node's data from the running `primary`, set up to stream from it (-R)."""
        self.run(
            "pg_basebackup", "-D", str(self.pgdata), "-R", "-X", "stream", "-c", "fast",
            "-h", "127.0.0.1", "-p", str(primary.port), "-U", SUPERUSER,
            env={"PGPASSWORD": primary.password},
        )  # fmt: skip

    def start(self, settings: dict[str, str]) -> None:
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "''",
            **settings,
        }
        flags = " ".join(f"-c {key}={value}" for key, value in options.items())
        self.run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.pgdata),
            "-l", str(self.folder / "server.log"), "-o", flags,
        )  # fmt: skip

    def promote(self) -> None:
        self.run("pg_ctl", "promote", "-w", "-D", str(self.pgdata))

    def postmaster_pid(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return None
        pid = int(pid_file.read_text().splitlines()[0])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def kill9(self) -> None:
        pid = self.postmaster_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)

    def url(self, dbname: str = DATABASE) -> str:
        secret = quote(self.password, safe="")
        return f"postgresql://{SUPERUSER}:{secret}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = DATABASE) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(dbname), autocommit=True)


def multi_host_url(nodes: list[Node], password: str) -> str:
    """One URL naming every node, that libpq resolves to whichever is the primary."""
    hosts = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
    return (
        f"postgresql://{SUPERUSER}:{quote(password, safe='')}@{hosts}/{DATABASE}"
        "?target_session_attrs=read-write"
    )


def new_password() -> str:
    return secrets.token_urlsafe(24)
