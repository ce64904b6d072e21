"""pyqueue.testing: a user's own handlers tested by running their jobs inline.

The "application" below is what a user writes: a signup that stores a user
and enqueues a welcome mail in one transaction, and the worker module whose
handler sends it (here: records it in a table). Its tests are written as the
README tells users to write theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import pytest

import pyqueue.testing
from pyqueue import InvalidArgument, JobContext, Queue, Worker
from pyqueue.testing import TooManyJobs
from tests.helpers import counts, dead, scalar

# ---------------------------------------------------------------- the user's application


@dataclass
class Welcome:
    user_id: int
    email: str


worker = Worker()


@worker.handler("emails.welcome")
def send_welcome(mail: Welcome, job: JobContext) -> dict[str, str]:
    if mail.email.endswith("@invalid"):
        raise ValueError(f"cannot deliver to {mail.email}")
    with psycopg.connect(APP_DSN[0], autocommit=True) as conn:
        conn.execute("INSERT INTO public.outbox (email) VALUES (%s)", [mail.email])
    job.progress(100, "sent")
    return {"sent_to": mail.email}


@worker.handler("reports")
async def build_report(payload: dict[str, int], job: JobContext) -> int:
    return payload["rows"] * 2


APP_DSN: list[str] = [""]  # the application's configuration, set by the fixture


def signup(conn: psycopg.Connection, queue: Queue, email: str) -> int:
    """The application's code under test: a user and their welcome mail, together."""
    row = conn.execute("INSERT INTO public.users (email) VALUES (%s) RETURNING id", [email])
    user_id = row.fetchone()[0]
    queue.enqueue("emails.welcome", Welcome(user_id, email), conn=conn)
    return user_id


@pytest.fixture
def app_db(dsn, db):
    db.execute("CREATE TABLE public.users (id serial PRIMARY KEY, email text)")
    db.execute("CREATE TABLE public.outbox (email text)")
    APP_DSN[0] = dsn
    return dsn


# ---------------------------------------------------------------- the user's tests


def test_signup_sends_a_welcome_mail(app_db, queue, db):
    with psycopg.connect(app_db) as conn:
        signup(conn, queue, "ada@example.com")
    jobs = pyqueue.testing.drain(app_db, worker)
    assert [(j.queue, j.status, j.result) for j in jobs] == [
        ("emails.welcome", "completed", {"sent_to": "ada@example.com"})
    ]
    assert jobs[0].progress == 100
    assert scalar(db, "SELECT array_agg(email) FROM public.outbox") == ["ada@example.com"]
    assert pyqueue.testing.drain(queue, worker) == []  # nothing left to run


def test_a_failing_handler_is_retried_later_then_dead_lettered(app_db, queue, db):
    with psycopg.connect(app_db) as conn:
        signup(conn, queue, "bob@invalid")
    [first] = pyqueue.testing.drain(app_db, worker)
    assert (first.status, first.attempt) == ("pending", 1)
    assert first.error == "cannot deliver to bob@invalid"
    assert "ValueError" in (first.traceback or "")
    db.execute("UPDATE pyqueue.jobs SET run_at = now()")  # its backoff over
    [second] = pyqueue.testing.drain(app_db, worker)
    assert (second.status, second.attempt) == ("pending", 2)


def test_a_payload_that_does_not_fit_dies_at_once(queue, db):
    job_id = queue.enqueue("emails.welcome", {"user_id": "one"}, max_attempts=5)
    [ran] = pyqueue.testing.drain(queue, worker)
    assert (ran.id, ran.status, ran.attempt) == (job_id, "dead", 1)
    assert "Welcome needs field email" in dead(db, job_id)["error"]


def test_jobs_run_inside_the_callers_transaction_and_roll_back_with_it(app_db, queue, db):
    with psycopg.connect(app_db) as conn:
        signup(conn, queue, "cy@example.com")
        queue.enqueue("reports", {"rows": 21}, conn=conn)
        jobs = pyqueue.testing.drain(conn, worker, queues=["reports"])
        assert [(j.status, j.result) for j in jobs] == [("completed", 42)]
        conn.rollback()
    assert counts(db) == (0, 0)
    assert scalar(db, "SELECT count(*) FROM public.users") == 0


def test_async_tests_drain_on_their_own_loop(queue):
    import asyncio

    queue.enqueue("reports", {"rows": 1})
    [done] = asyncio.run(pyqueue.testing.drain_async(queue, worker))
    assert done.result == 2


def test_a_handler_that_enqueues_forever_is_stopped(queue, db):
    looping = Worker()

    @looping.handler("again")
    def again(payload, job):
        queue.enqueue("again", payload)

    queue.enqueue("again", {})
    with pytest.raises(TooManyJobs, match="drain ran 5 jobs"):
        pyqueue.testing.drain(queue, looping, max_jobs=5)
    # The sixth job, claimed and not run, is handed back untouched.
    assert (
        scalar(db, "SELECT count(*) FROM pyqueue.jobs WHERE status = 'pending' AND attempt = 0")
        == 1
    )


def test_a_queue_without_a_handler_is_refused(queue):
    with pytest.raises(InvalidArgument, match="no handler for queue"):
        pyqueue.testing.drain(queue, worker, queues=["nobody"])
