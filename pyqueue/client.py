"""`Queue`: the producer's and operator's client.

Every method is one call of a SQL function in schema `pyqueue`: calls.py
builds the statement (named in queries.py) and its parameters, shared with
AsyncQueue; the job state machine lives in the database, not here.
Methods that write take an optional `conn`: given one, they run on it inside
the caller's transaction (a rollback leaves no job); otherwise each call is
its own transaction on a pooled connection.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pyqueue import calls, queries
from pyqueue.connecting import connect
from pyqueue.errors import translate_errors
from pyqueue.jobs import Job
from pyqueue.operations import Operations
from pyqueue.pool import CallConnection, ClientPool
from pyqueue.typed import Payload

# Seconds between reads of a waited-for job, in case a notification was missed.
WAIT_REREAD_SECONDS = 5.0


class Queue(Operations):
    """A client of the pyqueue schema in the database at `conninfo`.

    conninfo is any libpq connection string or URL (multi-host with
    target_session_attrs, service=..., the rest from PG* variables).
    connect_timeout: seconds a connection attempt may take (default: the
    string's own connect_timeout, else PGCONNECT_TIMEOUT, else 5); a call that
    cannot connect raises CannotConnect saying why. A call whose connection
    breaks before its answer arrives raises ConnectionLost, or OutcomeUnknown
    when it writes.
    """

    def __init__(
        self, conninfo: str, *, max_connections: int = 4, connect_timeout: float | None = None
    ) -> None:
        self.conninfo = conninfo
        self._pool = ClientPool(conninfo, max_connections, connect_timeout)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(
        self, conn: psycopg.Connection[Any] | None, writes: str | None = None
    ) -> CallConnection:
        return CallConnection(self._pool, conn, writes)

    def enqueue(
        self,
        queue: str,
        payload: Payload,
        *,
        run_at: datetime | None = None,
        delay: timedelta | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        timeout: timedelta | None = None,
        unique_mode: str | None = None,
        unique_period: timedelta | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> int:
        """Add a job; return its id (the existing job's, for a held idempotency key).

        The payload is JSON: dicts, lists and scalars, or a dataclass, TypedDict
        or pydantic model (stored as a JSON object). timeout bounds each run
        (None: the queue's); a run past it fails. unique_mode says how long a
        job holds its key (None: the queue's; see the README's "Flow control");
        unique_period is throttle's and debounce's.
        """
        call = calls.enqueue(
            queue,
            payload,
            run_at,
            delay,
            priority,
            max_attempts,
            idempotency_key,
            timeout,
            unique_mode,
            unique_period,
        )
        with self._connection(conn, "enqueue") as c:
            row = c.execute(*call).fetchone()
        assert row is not None
        return int(row[0])

    def enqueue_many(
        self,
        queue: str,
        payloads: Sequence[Payload],
        *,
        run_at: datetime | None = None,
        delay: timedelta | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        idempotency_keys: Sequence[str | None] | None = None,
        timeout: timedelta | None = None,
        unique_mode: str | None = None,
        unique_period: timedelta | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> list[int]:
        """Add one job per payload in one statement; return their ids in order."""
        call = calls.enqueue_many(
            queue,
            payloads,
            run_at,
            delay,
            priority,
            max_attempts,
            idempotency_keys,
            timeout,
            unique_mode,
            unique_period,
        )
        with self._connection(conn, "enqueue_many") as c:
            rows = c.execute(*call).fetchall()
        return [int(r[0]) for r in rows]

    def get_job(self, job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> Job:
        """One job by id; raises JobNotFound for an unknown id."""
        call = calls.get_job(job_id)
        with self._connection(conn) as c:
            job = c.cursor(row_factory=queries.JOB_ROW).execute(*call).fetchone()
        assert job is not None
        return job

    def list_jobs(
        self,
        *,
        status: str | None = None,
        queue: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Job]:
        """Jobs newest first, optionally of one status and one queue.

        With before_id, only jobs with a smaller id: pass the last id of one
        page to get the next.
        """
        call = calls.list_jobs(status, queue, limit, before_id)
        with self._connection(None) as c:
            return c.cursor(row_factory=queries.JOB_ROW).execute(*call).fetchall()

    def list_dead(self, *, queue: str | None = None, limit: int = 100) -> list[Job]:
        """Dead-lettered jobs, newest first."""
        return self.list_jobs(status="dead", queue=queue, limit=limit)

    def retry_dead(self, job_id: int) -> int:
        """Replay a dead-lettered job as a new pending job; return the new id."""
        call = calls.retry_dead(job_id)
        with self._connection(None, "retry_dead") as c:
            row = c.execute(*call).fetchone()
        assert row is not None
        return int(row[0])

    def cancel(self, job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> bool:
        """Cancel a pending or running job; False when it had already finished."""
        call = calls.cancel(job_id)
        with self._connection(conn, "cancel") as c:
            row = c.execute(*call).fetchone()
        assert row is not None
        return bool(row[0])

    def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """Block until the job has finished, or `timeout` seconds; return it as it is then.

        Woken by the NOTIFY that complete, fail, cancel and recovery send; the job
        is read again after each wake-up and at least every few seconds, in case a
        notification was missed while connecting.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with (
            translate_errors(),
            connect(self._pool.conninfo, autocommit=True) as listener,
        ):
            listener.execute(queries.LISTEN_FINISHED)
            while True:
                job = self.get_job(job_id, conn=listener)
                if job.finished:
                    return job
                remaining = WAIT_REREAD_SECONDS if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return job
                for note in listener.notifies(timeout=min(remaining, WAIT_REREAD_SECONDS)):
                    if str(job_id) in note.payload.split(","):
                        break
