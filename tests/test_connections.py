"""Connection strings, connection failures and outages, as an operator meets them.

Every entry point takes any connection string libpq takes (several hosts
with target_session_attrs, a service name, the rest from PG* variables),
`pyqueue migrate` included. A database that cannot be reached fails a call
within the connect timeout, with the cause named; the first call after it is
back succeeds; a call whose connection broke says whether it may have
happened.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import pyqueue
from pyqueue import CannotConnect, ConnectionLost, OutcomeUnknown, ReadOnlyDatabase
from tests.helpers import Gate, psql_conninfo, scalar, with_dbname
from tests.schemas import new_database

PYQUEUE = [sys.executable, "-m", "pyqueue.cli"]
REPO = Path(__file__).resolve().parent.parent


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`pyqueue ARGS` with exactly these connection variables (none inherited)."""
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}
    return subprocess.run(
        [*PYQUEUE, *args], capture_output=True, text=True, env={**base, **env}, cwd=REPO, timeout=60
    )


def dead_port() -> int:
    """A loopback port where nothing listens: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parts(dsn: str) -> dict[str, str]:
    return {k: str(v) for k, v in conninfo_to_dict(psql_conninfo(dsn)).items() if v is not None}


@pytest.fixture
def empty_database(dsn: str) -> Iterator[str]:
    with new_database(dsn) as database:
        yield database


# ---- any connection string libpq accepts ------------------------------------------


def test_migrate_takes_a_multi_host_url_whose_first_host_is_down(empty_database):
    p = parts(empty_database)
    auth = quote(p["user"], safe="")
    if "password" in p:
        auth += ":" + quote(p["password"], safe="")
    url = (
        f"postgresql://{auth}@127.0.0.1:{dead_port()},{p['host']}:{p['port']}/{p['dbname']}"
        "?target_session_attrs=read-write"
    )
    assert pyqueue.migrate(url) > 0
    with pyqueue.Queue(url) as q:
        assert q.get_job(q.enqueue("q", {"n": 1})).payload == {"n": 1}
    # Applied once: the second run finds nothing to do.
    assert pyqueue.migrate(url) == 0


def test_the_cli_migrates_and_works_through_a_multi_host_key_value_string(empty_database):
    p = parts(empty_database)
    conninfo = make_conninfo(
        psql_conninfo(empty_database),
        host=f"127.0.0.1,{p['host']}",
        port=f"{dead_port()},{p['port']}",
        target_session_attrs="read-write",
    )
    env = {"DATABASE_URL": conninfo}
    migrated = cli(env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "applied" in migrated.stdout
    with psycopg.connect(empty_database) as conn:
        assert scalar(conn, "SELECT pyqueue.schema_version()") == pyqueue.SCHEMA_VERSION
    assert cli(env, "enqueue", "emails", "{}").stdout.strip().isdigit()


def test_a_service_name_and_pg_variables(empty_database, tmp_path):
    p = parts(empty_database)
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[pyq]\nhost={p['host']}\nport={p['port']}\ndbname={p['dbname']}\n")
    secret = {"PGPASSWORD": p["password"]} if "password" in p else {}
    by_service = {
        "DATABASE_URL": "service=pyq",
        "PGSERVICEFILE": str(services),
        "PGUSER": p["user"],
        **secret,
    }
    assert cli(by_service, "migrate").returncode == 0
    job_id = cli(by_service, "enqueue", "emails", '{"via": "service"}').stdout.strip()
    # An empty URL: everything from PG* variables.
    by_variables = {
        "DATABASE_URL": "postgresql://",
        "PGHOST": p["host"],
        "PGPORT": p["port"],
        "PGUSER": p["user"],
        "PGDATABASE": p["dbname"],
        **secret,
    }
    shown = cli(by_variables, "job", job_id)
    assert '"via": "service"' in shown.stdout, shown.stderr


# ---- failing fast, with the cause ---------------------------------------------------


def refusal(conninfo: str, **options: float) -> tuple[CannotConnect, float]:
    """The CannotConnect a Queue call raises on `conninfo`, and how long it took."""
    started = time.monotonic()
    with pytest.raises(CannotConnect) as caught, pyqueue.Queue(conninfo, **options) as q:
        q.enqueue("q", {})
    return caught.value, time.monotonic() - started


def test_an_unknown_database_is_named_at_once(dsn):
    error, took = refusal(with_dbname(dsn, "no_such_database"))
    assert error.reason == "unknown database"
    assert 'database "no_such_database" does not exist' in str(error)
    assert took < 2


def test_an_unknown_role_is_refused_credentials_at_once(dsn):
    error, took = refusal(make_conninfo(psql_conninfo(dsn), user="no_such_role"))
    assert error.reason == "credentials refused"
    assert took < 2


def test_a_refused_port_is_unreachable_at_once(dsn):
    error, took = refusal(make_conninfo(psql_conninfo(dsn), port=str(dead_port())))
    assert error.reason == "unreachable"
    assert "Connection refused" in str(error)
    assert took < 2


def test_a_server_that_never_answers_fails_within_the_connect_timeout(dsn):
    with socket.create_server(("127.0.0.1", 0), backlog=1) as silent:
        port = silent.getsockname()[1]
        error, took = refusal(make_conninfo(psql_conninfo(dsn), port=str(port)), connect_timeout=2)
    assert error.reason == "unreachable"
    assert "timeout" in str(error)
    assert 1.5 < took < 5


def test_a_role_out_of_connection_slots_is_server_full(dsn, db):
    role = f"full_{uuid.uuid4().hex[:8]}"
    db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'secret' CONNECTION LIMIT 0")
    try:
        error, took = refusal(make_conninfo(psql_conninfo(dsn), user=role, password="secret"))
    finally:
        db.execute(f"DROP ROLE {role}")
    assert error.reason == "server full"
    assert took < 2


def test_a_read_only_server_is_named(dsn):
    read_only = make_conninfo(dsn, options="-c default_transaction_read_only=on")
    # Asked for a primary: libpq refuses the read-only session.
    error, _ = refusal(make_conninfo(read_only, target_session_attrs="read-write"))
    assert error.reason == "read-only standby"
    # Not asked: the write itself is refused, and the error says what to do.
    with pyqueue.Queue(read_only) as q, pytest.raises(ReadOnlyDatabase, match="read-write"):
        q.enqueue("q", {})


def test_a_malformed_connection_string_is_named_before_any_call():
    with pytest.raises(CannotConnect) as caught:
        pyqueue.Queue("postgresql://u@127.0.0.1:99999/db").get_job(1)
    assert caught.value.reason == "malformed connection string"
    with pytest.raises(CannotConnect, match="malformed"):
        pyqueue.Queue("host='unterminated")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["enqueue", "q", "{}"], "unknown database"),
        (["migrate"], "unknown database"),
        (["--connect-timeout", "2", "status"], "unknown database"),
    ],
)
def test_the_cli_names_the_cause_at_once(dsn, args, reason):
    started = time.monotonic()
    result = cli({"DATABASE_URL": with_dbname(dsn, "no_such_database")}, *args)
    assert result.returncode == 1
    assert result.stderr.startswith(f"pyqueue: error: cannot connect to the database ({reason})")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert time.monotonic() - started < 10


# ---- outages and recovery ------------------------------------------------------------


@pytest.fixture
def gate(dsn: str) -> Iterator[Gate]:
    p = parts(dsn)
    with Gate(p["host"], int(p["port"])) as relay:
        yield relay


def through(dsn: str, gate: Gate) -> str:
    return make_conninfo(psql_conninfo(dsn), host="127.0.0.1", port=str(gate.port))


def test_the_first_call_after_an_outage_succeeds(dsn, gate):
    with pyqueue.Queue(through(dsn, gate)) as q:
        job_id = q.enqueue("q", {})
        gate.close()
        started = time.monotonic()
        with pytest.raises((CannotConnect, ConnectionLost)):
            q.get_job(job_id)
        with pytest.raises(CannotConnect):
            q.get_job(job_id)
        assert time.monotonic() - started < 3
        gate.open()
        started = time.monotonic()
        assert q.get_job(job_id).status == "pending"
        assert q.enqueue("q", {}) > job_id
        assert time.monotonic() - started < 1


def test_an_enqueue_whose_answer_was_lost_says_so_and_a_keyed_retry_is_safe(dsn, db, gate):
    with pyqueue.Queue(through(dsn, gate)) as q:
        q.enqueue("warm-up", {})  # a pooled connection through the gate
        gate.mute()
        threading.Timer(0.5, gate.cut).start()
        with pytest.raises(OutcomeUnknown, match="same idempotency key is safe"):
            q.enqueue("q", {"n": 1}, idempotency_key="order-17")
        # The statement ran and committed; only its answer was lost.
        assert scalar(db, "SELECT count(*) FROM pyqueue.jobs WHERE queue = 'q'") == 1
        gate.open()
        first = scalar(db, "SELECT id FROM pyqueue.jobs WHERE queue = 'q'")
        assert q.enqueue("q", {"n": 1}, idempotency_key="order-17") == first
        assert scalar(db, "SELECT count(*) FROM pyqueue.jobs WHERE queue = 'q'") == 1


def test_a_read_whose_connection_broke_says_a_retry_is_safe(dsn, gate):
    with pyqueue.Queue(through(dsn, gate)) as q:
        job_id = q.enqueue("q", {})
        gate.mute()
        threading.Timer(0.5, gate.cut).start()
        with pytest.raises(ConnectionLost, match="trying again is safe") as caught:
            q.get_job(job_id)
        assert not isinstance(caught.value, OutcomeUnknown)
        gate.open()
        assert q.get_job(job_id).id == job_id


def test_a_connection_error_is_a_pyqueue_error_and_a_connection_error(dsn):
    # Callers may catch either; psycopg's own classes no longer escape a Queue.
    with pytest.raises(pyqueue.PyqueueError), pyqueue.Queue(with_dbname(dsn, "nope")) as q:
        q.get_job(1)
    with pytest.raises(ConnectionError), pyqueue.Queue(with_dbname(dsn, "nope")) as q:
        q.get_job(1)
    with pytest.raises(psycopg.Error), psycopg.connect(with_dbname(dsn, "nope")):
        pass
