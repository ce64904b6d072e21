"""AsyncQueue: the sync client's tests (tests/test_client.py), on asyncio.

The worker's side is driven through plain SQL on the `db` connection, as
there. Both clients build their statements in pyqueue/calls.py; the last
tests check that they share it and hold no argument rules of their own.
"""

from __future__ import annotations

import ast
import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

import pyqueue
from pyqueue import AsyncQueue, JobNotFound, JobStateError
from tests.helpers import (
    claim,
    claim_one,
    complete,
    counts,
    expire_lease,
    fail,
    job,
    scalar,
)

pytestmark = pytest.mark.anyio
PACKAGE = Path(pyqueue.__file__).parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def aqueue(dsn: str) -> AsyncIterator[AsyncQueue]:
    async with AsyncQueue(dsn) as q:
        yield q


async def _dead(aqueue, db, payload=None) -> int:
    job_id = await aqueue.enqueue("q", payload if payload is not None else {"k": 1}, max_attempts=1)
    c = claim_one(db)
    assert fail(db, job_id, c.lease_token, "gave up") == "dead"
    return job_id


# ---------------------------------------------------------------- enqueue and read


async def test_enqueue_then_get_job(aqueue, db):
    job_id = await aqueue.enqueue("emails", {"to": "a@example.com", "n": [1, 2.5, None, True]})
    j = await aqueue.get_job(job_id)
    assert isinstance(j, pyqueue.Job)
    assert (j.id, j.queue, j.status, j.finished) == (job_id, "emails", "pending", False)
    assert j.payload == {"to": "a@example.com", "n": [1, 2.5, None, True]}
    assert (j.attempt, j.max_attempts, j.priority) == (0, 3, 0)
    assert (await aqueue.get_job(await aqueue.enqueue("q", "just text"))).payload == "just text"
    assert (await aqueue.get_job(await aqueue.enqueue("q", None))).payload is None


async def test_enqueue_options(aqueue, db):
    now = scalar(db, "SELECT now()")
    delayed = await aqueue.get_job(await aqueue.enqueue("q", {}, delay=timedelta(hours=1)))
    assert delayed.run_at - now > timedelta(minutes=59)
    at = datetime(2999, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (await aqueue.get_job(await aqueue.enqueue("q", {}, run_at=at))).run_at == at
    urgent = await aqueue.enqueue("q", {}, priority=100, max_attempts=7, timeout=timedelta(1))
    j = job(db, urgent)
    assert (j["priority"], j["max_attempts"], j["timeout"]) == (100, 7, timedelta(1))
    assert [c.id for c in claim(db, batch_size=10)] == [urgent]  # the others are not due


async def test_enqueue_many_and_idempotency_keys(aqueue, db):
    ids = await aqueue.enqueue_many("q", [{"n": n} for n in range(20)], priority=3)
    assert len(set(ids)) == 20
    assert [(await aqueue.get_job(i)).payload["n"] for i in ids] == list(range(20))
    assert await aqueue.enqueue_many("q", []) == []
    first = await aqueue.enqueue("k", {"v": 1}, idempotency_key="order-9")
    assert await aqueue.enqueue("k", {"v": 2}, idempotency_key="order-9") == first
    keyed = await aqueue.enqueue_many("k", [1, 2, 3], idempotency_keys=["order-9", "x", "x"])
    assert keyed[0] == first and keyed[1] == keyed[2] != first
    assert counts(db) == (22, 0)


async def test_get_job_follows_the_job_through_its_states(aqueue, db):
    job_id = await aqueue.enqueue("q", {}, max_attempts=2)
    c = claim_one(db)
    running = await aqueue.get_job(job_id)
    assert (running.status, running.attempt, running.worker) == ("running", 1, "w1")
    fail(db, job_id, c.lease_token, "first failure")
    assert (await aqueue.get_job(job_id)).error == "first failure"
    db.execute("UPDATE pyqueue.jobs SET run_at = now() WHERE id = %s", [job_id])
    c = claim_one(db)
    complete(db, job_id, c.lease_token, '{"ok": 1}')
    done = await aqueue.get_job(job_id)
    assert (done.status, done.result, done.finished, done.attempt) == (
        "completed",
        {"ok": 1},
        True,
        2,
    )


async def test_list_jobs_filters_and_orders_newest_first(aqueue, db):
    a1 = await aqueue.enqueue("a", 1)
    b1 = await aqueue.enqueue("b", 2)
    buried = await _dead(aqueue, db)
    assert [j.id for j in await aqueue.list_jobs()] == [buried, b1, a1]
    assert [j.id for j in await aqueue.list_jobs(status="pending", queue="b")] == [b1]
    assert [j.id for j in await aqueue.list_jobs(limit=1)] == [buried]
    dead = await aqueue.list_dead()
    assert [(j.id, j.status, j.error) for j in dead] == [(buried, "dead", "gave up")]


# ---------------------------------------------------------------- operator actions


async def test_retry_dead_and_cancel(aqueue, db):
    old = await _dead(aqueue, db, {"invoice": 3})
    new = await aqueue.retry_dead(old)
    assert await aqueue.retry_dead(old) == new
    assert (await aqueue.get_job(new)).payload == {"invoice": 3}
    with pytest.raises(JobStateError, match=f"job {new} is not dead-lettered"):
        await aqueue.retry_dead(new)
    assert await aqueue.cancel(new) is True
    assert await aqueue.cancel(new) is False
    with pytest.raises(JobNotFound, match="no job with id 123456789"):
        await aqueue.cancel(123456789)


async def test_purge_configure_maintain_and_schedules(aqueue, db):
    await aqueue.configure_queue("tuned", max_attempts=6, retention=timedelta(0))
    job_id = await aqueue.enqueue("tuned", {})
    assert (await aqueue.get_job(job_id)).max_attempts == 6
    await aqueue.cancel(job_id)
    assert await aqueue.purge(queue="tuned") == 1
    assert (await aqueue.maintain())["ran"] is True
    tick = await aqueue.schedule("nightly", "0 3 * * *", "reports", {"kind": "daily"})
    assert (tick.hour, tick.minute) == (3, 0)
    assert [s.name for s in await aqueue.schedules()] == ["nightly"]
    assert await aqueue.unschedule("nightly") is True
    assert await aqueue.unschedule("nightly") is False


# ---------------------------------------------------------------- transactions


async def test_enqueue_on_the_callers_connection_rolls_back_with_it(aqueue, dsn, db):
    db.execute("CREATE TABLE public.orders (id int PRIMARY KEY)")
    async with await psycopg.AsyncConnection.connect(dsn) as app:
        await app.execute("INSERT INTO public.orders VALUES (1)")
        job_id = await aqueue.enqueue("invoices", {"order": 1}, conn=app)
        await app.rollback()
        assert counts(db) == (0, 0)
        assert scalar(db, "SELECT count(*) FROM public.orders") == 0
        with pytest.raises(JobNotFound):
            await aqueue.get_job(job_id)

        await app.execute("INSERT INTO public.orders VALUES (2)")
        kept = await aqueue.enqueue("invoices", {"order": 2}, conn=app)
        many = await aqueue.enqueue_many("invoices", [3, 4], conn=app)
        assert counts(db) == (0, 0)  # not visible before commit
        await app.commit()
    assert counts(db) == (3, 0)
    assert (await aqueue.get_job(kept)).payload == {"order": 2}
    assert [(await aqueue.get_job(i)).payload for i in many] == [3, 4]


async def test_cancel_on_the_callers_connection_rolls_back_with_it(aqueue, dsn):
    job_id = await aqueue.enqueue("q", {})
    async with await psycopg.AsyncConnection.connect(dsn) as app:
        assert await aqueue.cancel(job_id, conn=app) is True
        await app.rollback()
    assert (await aqueue.get_job(job_id)).status == "pending"


# ---------------------------------------------------------------- wait


async def _later(seconds, action):
    await asyncio.sleep(seconds)
    await asyncio.to_thread(action)


def _finisher(dsn, job_id, token, how="complete"):
    def finish():
        with psycopg.connect(dsn, autocommit=True) as worker:
            if how == "complete":
                complete(worker, job_id, token, '{"done": true}')
            elif how == "dead":
                fail(worker, job_id, token, "no luck")
            else:
                worker.execute("SELECT pyqueue.cancel(%s)", [job_id])

    return finish


@pytest.mark.parametrize("ending", ["completed", "dead", "cancelled"])
async def test_wait_returns_soon_after_the_job_finishes(aqueue, dsn, db, ending):
    job_id = await aqueue.enqueue("q", {}, max_attempts=1)
    c = claim_one(db)
    how = {"completed": "complete"}.get(ending, ending)
    started = time.monotonic()
    finishing = asyncio.create_task(_later(0.3, _finisher(dsn, job_id, c.lease_token, how)))
    j = await aqueue.wait(job_id, timeout=30)
    elapsed = time.monotonic() - started
    await finishing
    assert (j.status, j.finished) == (ending, True)
    # Woken by NOTIFY: well before the 5 s re-read that would catch it otherwise.
    assert 0.3 <= elapsed < 4, elapsed


async def test_many_waits_share_one_listen_connection(aqueue, dsn, db):
    ids = await aqueue.enqueue_many("q", [{}] * 20)
    claimed = claim(db, batch_size=20)
    waits = [asyncio.create_task(aqueue.wait(i, timeout=30)) for i in ids]
    await asyncio.sleep(0.5)
    listeners = scalar(
        db,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND query ILIKE 'LISTEN%%'",
    )
    assert listeners == 1
    for c in claimed:
        complete(db, c.id, c.lease_token)
    started = time.monotonic()
    finished = await asyncio.gather(*waits)
    assert [j.status for j in finished] == ["completed"] * 20
    assert time.monotonic() - started < 4


async def test_wait_returns_the_unfinished_job_at_timeout_and_raises_for_unknown(aqueue, db):
    job_id = await aqueue.enqueue("q", {})
    claim_one(db)
    started = time.monotonic()
    j = await aqueue.wait(job_id, timeout=0.5)
    assert (j.id, j.status, j.finished) == (job_id, "running", False)
    assert 0.5 <= time.monotonic() - started < 4
    with pytest.raises(JobNotFound):
        await aqueue.wait(123456789, timeout=1)


async def test_wait_survives_a_recovered_lease(aqueue, dsn, db):
    job_id = await aqueue.enqueue("q", {}, max_attempts=2)
    claim_one(db)
    expire_lease(db, job_id)

    def recover_and_finish():
        with psycopg.connect(dsn, autocommit=True) as worker:
            second = claim_one(worker)
            complete(worker, job_id, second.lease_token)

    finishing = asyncio.create_task(_later(0.3, recover_and_finish))
    j = await aqueue.wait(job_id, timeout=30)
    await finishing
    assert (j.status, j.attempt) == ("completed", 2)


# ---------------------------------------------------------------- one seam for both


def _calls_used(*files: str) -> set[str]:
    used = set()
    for name in files:
        for node in ast.walk(ast.parse((PACKAGE / name).read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "calls"
            ):
                used.add(node.attr)
    return used


def test_both_clients_build_every_call_in_calls_py():
    sync = _calls_used("client.py", "operations.py")
    asynchronous = _calls_used("asyncclient.py", "asyncoperations.py")
    assert sync == asynchronous
    assert {"enqueue", "enqueue_many", "get_job", "cancel", "schedule"} <= sync
    # Neither client names a statement of its own: only row factories and LISTEN.
    for name in ("client.py", "operations.py", "asyncclient.py", "asyncoperations.py"):
        tree = ast.parse((PACKAGE / name).read_text())
        statements = {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "queries"
        }
        assert statements <= {"JOB_ROW", "SCHEDULE_ROW", "LISTEN_FINISHED"}, name
