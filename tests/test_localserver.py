"""The private server lets in only whoever can read its password file.

Every OS user of the machine can reach its loopback port, so these tests
connect as another OS user (`nobody`, through runuser) and must be refused.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator

import psycopg
import pytest

from pyqueue.localserver import SECRET_FILE, LocalServer, temporary_server

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("psql") is None,
    reason="connecting as another OS user needs root, runuser and psql",
)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with temporary_server({"fsync": "off"}) as started:
        yield started


def psql_as(user: str, port: int, password: str | None) -> subprocess.CompletedProcess[str]:
    """psql run by another OS user; -w: never prompt, fail instead."""
    env = {"PATH": os.environ["PATH"], "PGCONNECT_TIMEOUT": "10"}
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(
        ["runuser", "-u", user, "--", "psql", "-w", "-h", "127.0.0.1", "-p", str(port),
         "-U", "postgres", "-d", "postgres", "-Atc", "SELECT current_user"],
        capture_output=True, text=True, env=env, cwd="/", timeout=30,
    )  # fmt: skip


def test_another_os_user_is_refused_without_the_password(server: LocalServer) -> None:
    port = server.port()
    assert port is not None
    without = psql_as("nobody", port, None)
    assert without.returncode != 0
    assert "no password supplied" in without.stderr
    wrong = psql_as("nobody", port, "a-guess")
    assert wrong.returncode != 0
    assert 'password authentication failed for user "postgres"' in wrong.stderr
    # The refusal is the password's doing: with it, the same user gets in.
    right = psql_as("nobody", port, server.secret())
    assert right.returncode == 0, right.stderr
    assert right.stdout.strip() == "postgres"


def test_the_password_file_is_private_to_the_server_user(server: LocalServer) -> None:
    secret_file = server.pgdata / SECRET_FILE
    mode = stat.S_IMODE(secret_file.stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(server.pgdata.stat().st_mode) == 0o700
    read = subprocess.run(
        ["runuser", "-u", "nobody", "--", "cat", str(secret_file)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert read.returncode != 0
    assert "Permission denied" in read.stderr


def test_the_url_connects_and_a_url_without_the_password_does_not(server: LocalServer) -> None:
    with psycopg.connect(server.url()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    bare = server.url().replace(f":{server.secret()}@", "@")
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(bare, connect_timeout=10)


def test_a_server_made_without_a_password_is_locked_on_start(server: LocalServer) -> None:
    # A server created by an older pyqueue trusted loopback and had no secret file.
    (server.pgdata / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
    (server.pgdata / SECRET_FILE).unlink()
    server.stop()
    url = server.start()
    port = server.port()
    assert port is not None
    assert psql_as("nobody", port, None).returncode != 0
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
