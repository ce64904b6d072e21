"""`Queue`: the producer's and operator's client.

Every method is one call of a SQL function in schema `pyqueue` (the statements
are in queries.py); the job state machine lives in the database, not here.
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

from pyqueue import queries
from pyqueue.errors import InvalidPayload, translate_errors
from pyqueue.jobs import Job
from pyqueue.operations import Operations
from pyqueue.pool import CallConnection, open_pool
from pyqueue.values import check_queue_text, sql_int, to_json


def enqueue_with_options(
    queue: str,
    payload: Any,
    run_at: datetime | None,
    delay: timedelta | None,
    priority: int,
    max_attempts: int | None,
    idempotency_key: str | None,
    timeout: timedelta | None,
    unique_mode: str | None = None,
    unique_period: timedelta | None = None,
) -> tuple[str, list[Any]]:
    """The enqueue call for these options: only those given are sent, by name."""
    options: dict[str, Any] = {
        "run_at": run_at,
        "delay": delay,
        "max_attempts": sql_int("max_attempts", max_attempts),
        "idempotency_key": idempotency_key,
        "timeout": timeout,
        "unique_mode": unique_mode,
        "unique_period": unique_period,
    }
    given = {name: value for name, value in options.items() if value is not None}
    if priority != 0:  # None too: the database refuses it, naming it
        given["priority"] = sql_int("priority", priority)
    return queries.enqueue_with_options(given), [queue, to_json(payload), *given.values()]


class Queue(Operations):
    """A client of the pyqueue schema in the database at `conninfo`."""

    def __init__(self, conninfo: str, *, max_connections: int = 4) -> None:
        self.conninfo = conninfo
        self._pool = open_pool(conninfo, max_connections)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self, conn: psycopg.Connection[Any] | None) -> CallConnection:
        return CallConnection(self._pool, conn)

    def enqueue(
        self,
        queue: str,
        payload: Any,
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

        timeout bounds each run (None: the queue's); a run past it fails.
        unique_mode says how long a job holds its key (None: the queue's; see
        the README's "Flow control"); unique_period is throttle's and debounce's.
        """
        check_queue_text(queue)
        if (
            run_at is None
            and delay is None
            and priority == 0
            and max_attempts is None
            and idempotency_key is None
            and timeout is None
            and unique_mode is None
            and unique_period is None
        ):
            # The everyday call, a queue and a payload: a constant query, built
            # by nobody, so that the client's share of an enqueue stays small.
            query, params = queries.ENQUEUE, [queue, to_json(payload)]
        else:
            query, params = enqueue_with_options(
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
        with self._connection(conn) as c:
            row = c.execute(query, params).fetchone()
        assert row is not None
        return int(row[0])

    def enqueue_many(
        self,
        queue: str,
        payloads: Sequence[Any],
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
        try:
            documents = [to_json(p) for p in payloads]
        except InvalidPayload:
            # Encode again, naming each, so that the error says which one.
            for i, p in enumerate(payloads, 1):
                to_json(p, f"payloads[{i}]")
            raise
        keys = list(idempotency_keys) if idempotency_keys is not None else None
        check_queue_text(queue)
        with self._connection(conn) as c:
            rows = c.execute(
                queries.ENQUEUE_BATCH,
                [
                    queue,
                    documents,
                    run_at,
                    delay,
                    sql_int("priority", priority),
                    sql_int("max_attempts", max_attempts),
                    keys,
                    timeout,
                    unique_mode,
                    unique_period,
                ],
            ).fetchall()
        return [int(r[0]) for r in rows]

    def get_job(self, job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> Job:
        """One job by id; raises JobNotFound for an unknown id."""
        with self._connection(conn) as c:
            job = (
                c.cursor(row_factory=queries.JOB_ROW)
                .execute(queries.GET_JOB, [sql_int("job_id", job_id, 64)])
                .fetchone()
            )
        assert job is not None
        return job

    def list_jobs(
        self, *, status: str | None = None, queue: str | None = None, limit: int = 100
    ) -> list[Job]:
        """Jobs newest first, optionally of one status and one queue."""
        with self._connection(None) as c:
            return (
                c.cursor(row_factory=queries.JOB_ROW)
                .execute(queries.LIST_JOBS, [status, queue, sql_int("limit", limit)])
                .fetchall()
            )

    def list_dead(self, *, queue: str | None = None, limit: int = 100) -> list[Job]:
        """Dead-lettered jobs, newest first."""
        return self.list_jobs(status="dead", queue=queue, limit=limit)

    def retry_dead(self, job_id: int) -> int:
        """Replay a dead-lettered job as a new pending job; return the new id."""
        with self._connection(None) as c:
            row = c.execute(queries.RETRY_DEAD, [sql_int("job_id", job_id, 64)]).fetchone()
        assert row is not None
        return int(row[0])

    def cancel(self, job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> bool:
        """Cancel a pending or running job; False when it had already finished."""
        with self._connection(conn) as c:
            row = c.execute(queries.CANCEL, [sql_int("job_id", job_id, 64)]).fetchone()
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
            psycopg.connect(self.conninfo, autocommit=True) as listener,
        ):
            listener.execute(queries.LISTEN_FINISHED)
            while True:
                job = self.get_job(job_id, conn=listener)
                if job.finished:
                    return job
                remaining = 5.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return job
                for note in listener.notifies(timeout=min(remaining, 5.0)):
                    if str(job_id) in note.payload.split(","):
                        break
