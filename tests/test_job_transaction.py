"""Completing a job in the caller's transaction, fenced by its lease token.

From SQL: pyqueue.complete_or_raise inside a transaction that also writes the
job's effect; with a stale token it raises and the whole transaction rolls
back. From Python: `job.transaction()` in plain and async handlers.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from pyqueue import LeaseLost, Worker
from pyqueue.worker import JobContext
from tests.helpers import (
    Conn,
    claim,
    claim_one,
    enqueue,
    expire_lease,
    job,
    scalar,
    sqlstate_of,
)
from tests.test_worker import FAST, running, wait_until

EFFECTS = "CREATE TABLE effects (job_id bigint NOT NULL, note text)"


def effects(db: Conn) -> list[tuple[Any, ...]]:
    return db.execute("SELECT job_id, note FROM effects ORDER BY job_id").fetchall()


def test_sql_a_completion_commits_with_the_callers_writes(db: Conn, dsn: str) -> None:
    db.execute(EFFECTS)
    job_id = enqueue(db)
    claimed = claim_one(db)
    with psycopg.connect(dsn) as conn:  # a transaction, as a psql user's BEGIN ... COMMIT
        conn.execute("INSERT INTO effects VALUES (%s, 'done')", [job_id])
        conn.execute(
            "SELECT pyqueue.complete_or_raise(%s, %s, '{\"n\": 1}')",
            [job_id, claimed.lease_token],
        )
        # Not visible outside before the commit: neither the effect nor the completion.
        assert effects(db) == []
        assert job(db, job_id)["status"] == "running"
    assert effects(db) == [(job_id, "done")]
    done = job(db, job_id)
    assert (done["status"], done["result"], done["lease_token"]) == ("completed", {"n": 1}, None)


def test_sql_a_stale_token_refuses_and_the_writes_roll_back(db: Conn, dsn: str) -> None:
    db.execute(EFFECTS)
    job_id = enqueue(db)
    first = claim_one(db, lease="1 second")
    expire_lease(db, job_id)
    second = claim_one(db)  # recovers the job and claims it again: a new token
    assert second.id == job_id and second.lease_token != first.lease_token
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO effects VALUES (%s, 'stale run')", [job_id])
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("SELECT pyqueue.complete_or_raise(%s, %s)", [job_id, first.lease_token])
        conn.rollback()
    assert refused.value.sqlstate == "55000"
    assert f"job {job_id} is no longer held" in str(refused.value)
    assert effects(db) == []
    still = job(db, job_id)
    assert (still["status"], still["lease_token"]) == ("running", second.lease_token)


def test_sql_a_rolled_back_completion_leaves_the_job_held(db: Conn, dsn: str) -> None:
    job_id = enqueue(db)
    claimed = claim_one(db)
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT pyqueue.complete_or_raise(%s, %s)", [job_id, claimed.lease_token])
        conn.rollback()
    assert job(db, job_id)["status"] == "running"
    # ... and the run may still complete it, once.
    db.execute("SELECT pyqueue.complete_or_raise(%s, %s)", [job_id, claimed.lease_token])
    assert job(db, job_id)["status"] == "completed"
    again = sqlstate_of(
        db, "SELECT pyqueue.complete_or_raise(%s, %s)", [job_id, claimed.lease_token]
    )
    assert again.sqlstate == "55000"


def test_sql_an_open_completion_keeps_recovery_and_cancel_off_the_job(db: Conn, dsn: str) -> None:
    job_id = enqueue(db)
    claimed = claim_one(db)
    expire_lease(db, job_id)
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT pyqueue.complete_or_raise(%s, %s)", [job_id, claimed.lease_token])
        # The row is locked until the commit: recovery skips it.
        assert scalar(db, "SELECT pyqueue.recover_expired()") == 0
    assert job(db, job_id)["status"] == "completed"
    assert scalar(db, "SELECT pyqueue.cancel(%s)", [job_id]) is False


def test_sql_refusals_name_the_problem(db: Conn) -> None:
    job_id = enqueue(db)
    claimed = claim_one(db)
    unknown = sqlstate_of(db, "SELECT pyqueue.complete_or_raise(%s, %s)", [10**12, uuid.uuid4()])
    assert unknown.sqlstate == "P0002"
    for args in ([None, claimed.lease_token], [job_id, None]):
        null = sqlstate_of(db, "SELECT pyqueue.complete_or_raise(%s, %s)", args)
        assert null.sqlstate == "22023" and "must not be NULL" in str(null)
    db.execute("SELECT pyqueue.cancel(%s)", [job_id])
    cancelled = sqlstate_of(
        db, "SELECT pyqueue.complete_or_raise(%s, %s)", [job_id, claimed.lease_token]
    )
    assert cancelled.sqlstate == "55000"
    assert job(db, job_id)["status"] == "cancelled"


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_a_handlers_writes_and_its_completion_commit_together(
    dsn: str, db: Conn, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    db.execute(EFFECTS)
    worker = Worker(**FAST)
    if kind == "plain":

        @worker.handler("q")
        def write(payload: Any, job: JobContext) -> str:
            with job.transaction(result={"wrote": job.id}) as conn:
                conn.execute("INSERT INTO effects VALUES (%s, 'plain')", [job.id])
            return "not stored: the transaction completed the job"
    else:

        @worker.handler("q")
        async def write_async(payload: Any, job: JobContext) -> None:
            async with job.transaction(result={"wrote": job.id}) as conn:
                await conn.execute("INSERT INTO effects VALUES (%s, 'async')", [job.id])

    ids = [enqueue(db) for _ in range(20)]
    with caplog.at_level(logging.DEBUG, "pyqueue.worker"), running(worker, dsn):
        wait_until(
            lambda: scalar(db, "SELECT count(*) FROM pyqueue.jobs WHERE status = 'completed'") == 20
        )
    assert effects(db) == [(i, kind) for i in ids]
    results = db.execute("SELECT result FROM pyqueue.jobs ORDER BY id").fetchall()
    assert results == [({"wrote": i},) for i in ids]
    assert "lost" not in caplog.text  # the worker stored nothing more for these jobs


def test_a_run_that_lost_its_job_commits_nothing(dsn: str, db: Conn) -> None:
    db.execute(EFFECTS)
    worker = Worker(**FAST)
    raised: list[BaseException] = []

    @worker.handler("q")
    def write(payload: Any, job: JobContext) -> None:
        with psycopg.connect(dsn, autocommit=True) as other:  # an operator cancels it meanwhile
            other.execute("SELECT pyqueue.cancel(%s)", [job.id])
        try:
            with job.transaction() as conn:
                conn.execute("INSERT INTO effects VALUES (%s, 'lost run')", [job.id])
        except LeaseLost as error:
            raised.append(error)
            raise

    job_id = enqueue(db)
    with running(worker, dsn):
        wait_until(lambda: raised)
    assert effects(db) == []
    assert job(db, job_id)["status"] == "cancelled"
    assert f"job {job_id} is no longer held" in str(raised[0])
    assert "rolled back" in str(raised[0])


def test_a_handler_error_in_the_block_rolls_its_writes_back_and_fails_the_job(
    dsn: str, db: Conn
) -> None:
    db.execute(EFFECTS)
    worker = Worker(**FAST)

    @worker.handler("q")
    def write(payload: Any, job: JobContext) -> None:
        with job.transaction() as conn:
            conn.execute("INSERT INTO effects VALUES (%s, %s)", [job.id, f"run {job.attempt}"])
            if job.attempt == 1:
                raise RuntimeError("the first run fails after writing")

    job_id = enqueue(db, backoff_base="10 ms")
    with running(worker, dsn):
        wait_until(lambda: job(db, job_id)["status"] == "completed")
    assert effects(db) == [(job_id, "run 2")]
    assert job(db, job_id)["error"] == "the first run fails after writing"


def test_a_transaction_left_open_by_a_handler_never_swallows_the_next_jobs(
    dsn: str, db: Conn
) -> None:
    db.execute(EFFECTS)
    worker = Worker(concurrency=1, **FAST)  # one handler thread: one connection for all

    @worker.handler("q")
    def write(payload: Any, job: JobContext) -> None:
        with job.transaction() as conn:
            conn.execute("INSERT INTO effects VALUES (%s, 'ok')", [job.id])
        conn.execute("BEGIN")  # left open: the next job must not nest in it

    ids = [enqueue(db) for _ in range(3)]
    with running(worker, dsn):
        wait_until(
            lambda: scalar(db, "SELECT count(*) FROM pyqueue.jobs WHERE status = 'completed'") == 3
        )
    assert effects(db) == [(i, "ok") for i in ids]


# What may happen to a job between its claim and the run's completion in its
# transaction, and whether the run still holds it afterwards.
MEANWHILE = {
    "nothing": True,
    "heartbeat": True,
    "cancelled": False,
    "recovered and claimed again": False,
    "recovered, not claimed again": False,
    "completed by the run already": False,
    "past its timeout": False,
}


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None, max_examples=40
)
@given(
    events=st.lists(st.sampled_from(sorted(MEANWHILE)), max_size=3),
    result=st.one_of(
        st.none(), st.integers(), st.text(st.characters(exclude_characters="\x00"), max_size=20)
    ),
)
def test_sql_the_callers_writes_commit_exactly_when_the_run_holds_the_job(
    db: Conn, dsn: str, events: list[str], result: Any
) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS effects (job_id bigint NOT NULL, note text)")
    db.execute("TRUNCATE effects")
    db.execute("DELETE FROM pyqueue.jobs")
    job_id = enqueue(db, timeout="1 hour", max_attempts=10)
    token = claim_one(db).lease_token
    held = True
    for event in events:
        status = job(db, job_id)["status"]
        if event == "heartbeat":
            db.execute("SELECT pyqueue.heartbeat(%s, %s)", [[job_id], [token]])
        elif event == "cancelled":
            db.execute("SELECT pyqueue.cancel(%s)", [job_id])
        elif event.startswith("recovered") and status == "running":
            expire_lease(db, job_id)
            db.execute("SELECT pyqueue.recover_expired()")
            if event.endswith("claimed again"):
                claim(db, "q", 1)
        elif event == "completed by the run already":
            db.execute("SELECT pyqueue.complete(%s, %s)", [job_id, token])
        elif event == "past its timeout" and status == "running":
            db.execute(
                "UPDATE pyqueue.jobs SET started_at = now() - interval '2 hours' WHERE id = %s",
                [job_id],
            )
        held = held and MEANWHILE[event]
    before = job(db, job_id)

    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO effects VALUES (%s, 'effect')", [job_id])
        try:
            conn.execute(
                "SELECT pyqueue.complete_or_raise(%s, %s, %s)",
                [job_id, token, Jsonb(result)],
            )
            refused = None
        except psycopg.Error as error:
            refused = error
            conn.rollback()

    after = job(db, job_id)
    if held:
        assert refused is None
        assert effects(db) == [(job_id, "effect")]
        assert (after["status"], after["result"]) == ("completed", result)
    else:
        assert refused is not None and refused.sqlstate == "55000"
        assert effects(db) == []
        assert after == before
