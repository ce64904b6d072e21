"""Small helpers shared by the engine tests: plain SQL calls and row counts."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from pyqueue.jobs import ClaimedJob
from pyqueue.worker import Worker

Conn = psycopg.Connection[Any]


def scalar(conn: Conn, query: str, params: Any = None) -> Any:
    """The first column of the first row of a query."""
    row = conn.execute(query, params).fetchone()
    assert row is not None, f"no row from {query}"
    return row[0]


def row(conn: Conn, query: str, params: Any = None) -> dict[str, Any]:
    """The first row of a query, as a dict."""
    found = conn.cursor(row_factory=dict_row).execute(query, params).fetchone()
    assert found is not None, f"no row from {query}"
    return found


def rows(conn: Conn, query: str, params: Any = None) -> list[dict[str, Any]]:
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


def counts(conn: Conn) -> tuple[int, int]:
    """How many rows pyqueue.jobs and pyqueue.dead_jobs hold."""
    found = conn.execute(
        "SELECT (SELECT count(*) FROM pyqueue.jobs), (SELECT count(*) FROM pyqueue.dead_jobs)"
    ).fetchone()
    assert found is not None
    return int(found[0]), int(found[1])


def job(conn: Conn, job_id: int) -> dict[str, Any]:
    """A live job's row in pyqueue.jobs."""
    return row(conn, "SELECT * FROM pyqueue.jobs WHERE id = %s", [job_id])


def dead(conn: Conn, job_id: int) -> dict[str, Any]:
    """A dead letter's row in pyqueue.dead_jobs."""
    return row(conn, "SELECT * FROM pyqueue.dead_jobs WHERE id = %s", [job_id])


def status(conn: Conn, job_id: int) -> str:
    """pending/running/completed/cancelled from jobs, 'dead' from dead_jobs."""
    return str(scalar(conn, "SELECT status FROM pyqueue.all_jobs WHERE id = %s", [job_id]))


def enqueue(conn: Conn, queue: str = "q", payload: Any = "{}", **options: Any) -> int:
    """pyqueue.enqueue(queue, payload::jsonb, <options> => ...) by named arguments.

    payload is JSON text; any other value is encoded as JSON first.
    """
    text = payload if isinstance(payload, str) or payload is None else json.dumps(payload)
    named = "".join(f", {name} => %({name})s" for name in options)
    query = f"SELECT pyqueue.enqueue(%(queue)s, %(payload)s::jsonb{named})"
    return int(scalar(conn, query, {"queue": queue, "payload": text, **options}))


# What claim_batch returns, as the Python driver types it.
Claimed = ClaimedJob


def claim(
    conn: Conn,
    queues: str | list[str] = "q",
    batch_size: int = 1,
    lease: str = "30 seconds",
    worker: str = "w1",
) -> list[Claimed]:
    """pyqueue.claim_batch(...) as a psql user calls it."""
    names = [queues] if isinstance(queues, str) else queues
    found = rows(
        conn,
        "SELECT * FROM pyqueue.claim_batch(%s::text[], %s, %s, %s::interval)",
        [names, worker, batch_size, lease],
    )
    return [Claimed(**r) for r in found]


def claim_one(conn: Conn, queue: str = "q", lease: str = "30 seconds") -> Claimed:
    found = claim(conn, queue, 1, lease)
    assert len(found) == 1, f"expected one job to claim on {queue}, got {found}"
    return found[0]


def complete(conn: Conn, job_id: int, token: uuid.UUID, result: Any = None) -> bool:
    return bool(scalar(conn, "SELECT pyqueue.complete(%s, %s, %s::jsonb)", [job_id, token, result]))


def fail(conn: Conn, job_id: int, token: uuid.UUID, error: str = "boom") -> str:
    return str(scalar(conn, "SELECT pyqueue.fail(%s, %s, %s)", [job_id, token, error]))


def expire_lease(conn: Conn, job_id: int) -> None:
    """Simulate the clock: the job's lease ran out a second ago."""
    conn.execute(
        "UPDATE pyqueue.jobs SET locked_until = now() - interval '1 second' WHERE id = %s",
        [job_id],
    )


def make_due(conn: Conn, job_id: int) -> None:
    """Simulate the clock: a retry waiting for its backoff is due now."""
    conn.execute("UPDATE pyqueue.jobs SET run_at = now() WHERE id = %s", [job_id])


def sqlstate_of(conn: Conn, query: str, params: Any = None) -> psycopg.Error:
    """Run a query that must fail; return the error. Autocommit connections only."""
    try:
        conn.execute(query, params)
    except psycopg.Error as error:
        return error
    raise AssertionError(f"no error from {query} {params!r}")


def contents(conn: Conn) -> dict[str, Any]:
    """Every row of pyqueue.jobs, dead_jobs and queues, as JSON, in key order."""
    found = conn.execute(
        "SELECT (SELECT jsonb_agg(to_jsonb(j) ORDER BY j.id) FROM pyqueue.jobs j),"
        " (SELECT jsonb_agg(to_jsonb(d) ORDER BY d.id) FROM pyqueue.dead_jobs d),"
        " (SELECT jsonb_agg(to_jsonb(q) ORDER BY q.name) FROM pyqueue.queues q)"
    ).fetchone()
    assert found is not None
    return dict(zip(("jobs", "dead_jobs", "queues"), found, strict=True))


@contextmanager
def writes_nothing(conn: Conn) -> Iterator[None]:
    """Assert that the block leaves pyqueue.jobs, dead_jobs and queues as they were.

    Row by row, not by count: an UPDATE changes no count.
    """
    before = contents(conn)
    yield
    assert contents(conn) == before


def wait_until(
    condition: Callable[[], Any],
    timeout: float = 15.0,
    what: str = "",
    explain: Callable[[], str] | None = None,
) -> Any:
    """Poll `condition` until it is true and return its value; fail at the deadline.

    explain, when given, adds what to read on failure (a worker's log, say).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    detail = f"\n{explain()}" if explain is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}{detail}")


def psql_conninfo(dsn: str) -> str:
    """The test DSN reduced to what any libpq (psql 15 included) understands."""
    params = conninfo_to_dict(dsn)
    keep = ("host", "port", "user", "password", "dbname")
    return make_conninfo(**{k: v for k, v in params.items() if k in keep and v is not None})


def with_dbname(dsn: str, dbname: str) -> str:
    """The same server, another database."""
    return make_conninfo(psql_conninfo(dsn), dbname=dbname)


@contextmanager
def login_role(db: Conn, dsn: str, *memberships: str) -> Iterator[str]:
    """A LOGIN role of its own, a member of `memberships`: yields its conninfo.

    Roles belong to the whole cluster, so the name is unique and the role is
    dropped afterwards, with its queue grants.
    """
    name = f"t_{uuid.uuid4().hex[:12]}"
    password = uuid.uuid4().hex
    db.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    for membership in memberships:
        db.execute(f"GRANT {membership} TO {name}")
    try:
        yield make_conninfo(dsn, user=name, password=password)
    finally:
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [name]
        )
        db.execute("DELETE FROM pyqueue.queue_grants WHERE role = %s", [name])
        db.execute(f"DROP OWNED BY {name}")
        db.execute(f"DROP ROLE {name}")


class Gate:
    """A TCP relay in front of a server, for outages on demand: `with Gate(host, port) as g:`.

    g.port is where clients connect. close() cuts every relayed connection and
    drops new ones as they arrive, as a server going down does; open() lets
    connections through again. mute() swallows the
    server's answers from then on, so that a call's statement runs but its
    reply never arrives; cut() then breaks the connections mid-call.
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._open = threading.Event()
        self._open.set()
        self._muted = False
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open.is_set():
                client.close()  # down: the connection is dropped at once
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if not (answers and self._muted):
                    target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Break every relayed connection."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def mute(self) -> None:
        self._muted = True

    def close(self) -> None:
        self._open.clear()
        self.cut()

    def open(self) -> None:
        self._muted = False
        self._open.set()


@contextmanager
def running(worker: Worker, dsn: str) -> Iterator[threading.Thread]:
    """worker.run(dsn) in a thread for the duration of the block; stop() and join after.

    Yields the thread: it is no longer alive once run() has returned.
    """
    failures: list[BaseException] = []

    def target() -> None:
        try:
            worker.run(dsn, install_signal_handlers=False)
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=target, name="test-worker")
    thread.start()
    try:
        yield thread
    finally:
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the worker did not stop within 30 s"
    if failures:
        raise failures[0]
