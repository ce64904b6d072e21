"""Run the jobs your code enqueued, inline, in your tests, over the real SQL.

    import pyqueue.testing
    from myapp.jobs import worker            # your pyqueue.Worker and its handlers

    def test_signup_sends_a_welcome_mail(db_url):
        signup(db_url, "ada@example.com")    # enqueues "emails" inside its transaction
        jobs = pyqueue.testing.drain(db_url, worker)
        assert [(j.queue, j.status) for j in jobs] == [("emails", "completed")]
        assert jobs[0].result == {"sent_to": "ada@example.com"}

`drain` claims the due jobs of the worker's queues one at a time, runs each
handler in the calling thread (an `async def` one on a private event loop),
and stores its result or error exactly as a worker does: the same SQL
functions, typed payloads decoded the same way, failures retried later or
dead-lettered by the database's own rules. It returns each job as it stands
after its run. Nothing of the database is mocked, so the test sees what
production would.

The database may be a connection string, a pyqueue.Queue, or a psycopg
Connection, whose transaction the jobs then run in: a test that rolls it
back leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import psycopg

from pyqueue import queries
from pyqueue.client import Queue
from pyqueue.errors import InvalidArgument, PyqueueError
from pyqueue.jobs import ClaimedJob, Job
from pyqueue.values import sql_text
from pyqueue.worker.context import JobContext
from pyqueue.worker.executor import Handler, is_async
from pyqueue.worker.outcome import encode_result, failure
from pyqueue.worker.runner import Worker

Database = str | Queue | psycopg.Connection[Any]

# The lease of a job run inline: long enough for any handler a test runs.
LEASE = timedelta(minutes=10)


class TooManyJobs(PyqueueError):
    """drain() ran max_jobs jobs and more were still due (a handler that enqueues forever?)."""


def drain(
    database: Database,
    worker: Worker,
    *,
    queues: Sequence[str] | None = None,
    max_jobs: int = 1000,
    name: str = "pyqueue.testing",
) -> list[Job]:
    """Run every due job of the worker's queues (or `queues`) until none is due.

    Returns the jobs run, in the order run, as they are after their run
    (completed, pending again for a retry, or dead). Jobs that handlers
    enqueue while draining are run too, if they are due.
    """
    return asyncio.run(drain_async(database, worker, queues=queues, max_jobs=max_jobs, name=name))


async def drain_async(
    database: Database,
    worker: Worker,
    *,
    queues: Sequence[str] | None = None,
    max_jobs: int = 1000,
    name: str = "pyqueue.testing",
) -> list[Job]:
    """drain() for a test that runs on an event loop already (an async test)."""
    handlers = worker.handlers
    wanted = list(queues) if queues is not None else sorted(handlers)
    missing = [q for q in wanted if q not in handlers]
    if missing:
        raise InvalidArgument(f"the worker has no handler for queue(s) {', '.join(missing)}")
    ran: list[Job] = []
    with _connection(database) as conn:
        while True:
            row = conn.execute(queries.CLAIM, [wanted, name, 1, LEASE, 0]).fetchone()
            if row is None:
                return ran
            if len(ran) == max_jobs:
                conn.execute(queries.HAND_BACK, [[row[0]], [row[5]]])
                raise TooManyJobs(f"drain ran {max_jobs} jobs (max_jobs) and more are due")
            job = ClaimedJob(*row)
            await _run(conn, handlers[job.queue], job)
            ran.append(_read(conn, job.id))


@contextlib.contextmanager
def _connection(database: Database) -> Iterator[psycopg.Connection[Any]]:
    if isinstance(database, psycopg.Connection):
        yield database
        return
    conninfo = database.conninfo if isinstance(database, Queue) else database
    with psycopg.connect(conninfo, autocommit=True) as conn:
        yield conn


async def _run(conn: psycopg.Connection[Any], handler: Handler, job: ClaimedJob) -> None:
    """Run one claimed job's handler and store its outcome, as a worker does."""

    async def send_progress(job: ClaimedJob, pct: int, message: str | None) -> None:
        text = None if message is None else sql_text(message)
        conn.execute(queries.REPORT_PROGRESS, [job.id, job.lease_token, pct, text])

    context = JobContext(job, asyncio.get_running_loop(), send_progress)
    try:
        returned = handler(job.payload, context)
        if is_async(handler):
            returned = await returned
        result, error, trace = encode_result(returned), None, None
    except Exception as raised:
        result, error, trace = failure(raised)
    context.end()
    await context.flushed(timeout=5.0)
    if error is None:
        conn.execute(queries.COMPLETE, [[job.id], [job.lease_token], [result]])
    else:
        retryable = None if context.retryable else [False]
        conn.execute(queries.FAIL_BATCH, [[job.id], [job.lease_token], [error], [trace], retryable])


def _read(conn: psycopg.Connection[Any], job_id: int) -> Job:
    job = conn.cursor(row_factory=queries.JOB_ROW).execute(queries.GET_JOB, [job_id]).fetchone()
    assert job is not None
    return job
