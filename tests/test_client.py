"""The job transitions through pyqueue.Queue, and the client's own features.

The client is the producer's and operator's side; the worker's side (claim,
complete, fail) is driven here through plain SQL on the `db` connection.
"""

from __future__ import annotations

import math
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

import pyqueue
from pyqueue import InvalidPayload, JobNotFound, JobStateError, Queue
from tests.helpers import (
    claim,
    claim_one,
    complete,
    counts,
    expire_lease,
    fail,
    job,
    scalar,
    writes_nothing,
)


def _dead(queue: Queue, db, payload=None) -> int:
    """A job that failed its only attempt."""
    job_id = queue.enqueue("q", payload if payload is not None else {"k": 1}, max_attempts=1)
    c = claim_one(db)
    assert c.id == job_id
    assert fail(db, job_id, c.lease_token, "gave up") == "dead"
    return job_id


# ---------------------------------------------------------------- enqueue and read


def test_enqueue_then_get_job(queue, db):
    job_id = queue.enqueue("emails", {"to": "a@example.com", "n": [1, 2.5, None, True]})
    j = queue.get_job(job_id)
    assert isinstance(j, pyqueue.Job)
    assert (j.id, j.queue, j.status, j.finished) == (job_id, "emails", "pending", False)
    assert j.payload == {"to": "a@example.com", "n": [1, 2.5, None, True]}
    assert (j.attempt, j.max_attempts, j.priority) == (0, 3, 0)
    assert j.error is None and j.result is None and j.retried_as is None
    assert isinstance(j.created_at, datetime)
    # Scalars and strings are payloads too.
    assert queue.get_job(queue.enqueue("q", "just text")).payload == "just text"
    assert queue.get_job(queue.enqueue("q", None)).payload is None


def test_enqueue_options(queue, db):
    now = scalar(db, "SELECT now()")
    delayed = queue.get_job(queue.enqueue("q", {}, delay=timedelta(hours=1)))
    assert delayed.run_at - now > timedelta(minutes=59)
    at = datetime(2999, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert queue.get_job(queue.enqueue("q", {}, run_at=at)).run_at == at
    urgent = queue.enqueue("q", {}, priority=100, max_attempts=7)
    j = queue.get_job(urgent)
    assert (j.priority, j.max_attempts) == (100, 7)
    assert [c.id for c in claim(db, batch_size=10)] == [urgent]  # the others are not due


def test_enqueue_many_returns_ids_in_payload_order(queue, db):
    ids = queue.enqueue_many("q", [{"n": n} for n in range(20)], priority=3)
    assert len(ids) == len(set(ids)) == 20
    assert [queue.get_job(i).payload["n"] for i in ids] == list(range(20))
    assert {queue.get_job(i).priority for i in ids} == {3}
    assert queue.enqueue_many("q", []) == []
    assert counts(db) == (20, 0)


def test_idempotency_keys_through_the_client(queue, db):
    first = queue.enqueue("q", {"v": 1}, idempotency_key="order-9")
    assert queue.enqueue("q", {"v": 2}, idempotency_key="order-9") == first
    ids = queue.enqueue_many("q", [1, 2, 3], idempotency_keys=["order-9", "x", "x"])
    assert ids[0] == first and ids[1] == ids[2] != first
    assert counts(db) == (2, 0)
    assert queue.get_job(first).payload == {"v": 1}


@pytest.mark.parametrize("keyed", [False, True], ids=["without keys", "with keys"])
def test_enqueue_many_gives_every_job_its_options(queue, db, keyed):
    def many(prefix, **options):
        keys = [f"{prefix}-{n}" for n in range(2)] if keyed else None
        return queue.enqueue_many("q", [1, 2], idempotency_keys=keys, **options)

    now = scalar(db, "SELECT now()")
    delayed = many("delayed", delay=timedelta(hours=1), priority=3, max_attempts=5)
    at = datetime(2999, 1, 2, 3, 4, 5, tzinfo=UTC)
    scheduled = many("scheduled", run_at=at)
    for job_id in delayed:
        j = queue.get_job(job_id)
        assert j.run_at - now > timedelta(minutes=59)
        assert (j.priority, j.max_attempts) == (3, 5)
    assert [queue.get_job(i).run_at for i in scheduled] == [at, at]
    assert claim(db, batch_size=10) == []


def test_a_key_held_on_two_queues_gives_each_queue_its_own_job_through_the_client(queue, db):
    on_a = queue.enqueue("a", {}, idempotency_key="k")
    on_b = queue.enqueue("b", {}, idempotency_key="k")
    assert on_a != on_b
    assert queue.enqueue("b", {}, idempotency_key="k") == on_b
    assert queue.enqueue("a", {}, idempotency_key="k") == on_a
    assert queue.enqueue_many("b", [{}], idempotency_keys=["k"]) == [on_b]
    assert queue.enqueue_many("a", [{}], idempotency_keys=["k"]) == [on_a]
    assert counts(db) == (2, 0)


def test_get_job_follows_the_job_through_its_states(queue, db):
    job_id = queue.enqueue("q", {}, max_attempts=2)
    c = claim_one(db)
    running = queue.get_job(job_id)
    assert (running.status, running.attempt, running.worker) == ("running", 1, "w1")
    assert running.locked_until is not None and not running.finished
    fail(db, job_id, c.lease_token, "first failure")
    retrying = queue.get_job(job_id)
    assert (retrying.status, retrying.error, retrying.finished) == (
        "pending",
        "first failure",
        False,
    )
    db.execute("UPDATE pyqueue.jobs SET run_at = now() WHERE id = %s", [job_id])
    c = claim_one(db)
    complete(db, job_id, c.lease_token, '{"ok": 1}')
    done = queue.get_job(job_id)
    assert (done.status, done.result, done.finished, done.attempt) == (
        "completed",
        {"ok": 1},
        True,
        2,
    )
    assert done.finished_at is not None


def test_list_jobs_filters_and_orders_newest_first(queue, db):
    a1 = queue.enqueue("a", 1)
    b1 = queue.enqueue("b", 2)
    a2 = queue.enqueue("a", 3)
    buried = _dead(queue, db)
    assert [j.id for j in queue.list_jobs()] == [buried, a2, b1, a1]
    assert [j.id for j in queue.list_jobs(queue="a")] == [a2, a1]
    assert [j.id for j in queue.list_jobs(status="pending")] == [a2, b1, a1]
    assert [j.id for j in queue.list_jobs(status="pending", queue="b")] == [b1]
    assert [j.id for j in queue.list_jobs(limit=2)] == [buried, a2]
    assert queue.list_jobs(status="running") == []
    dead = queue.list_dead()
    assert [(j.id, j.status, j.error) for j in dead] == [(buried, "dead", "gave up")]
    assert queue.list_dead(queue="a") == []


# ---------------------------------------------------------------- operator actions


def test_retry_dead_through_the_client(queue, db):
    old = _dead(queue, db, {"invoice": 3})
    new = queue.retry_dead(old)
    assert new != old
    assert queue.retry_dead(old) == new
    fresh = queue.get_job(new)
    assert (fresh.status, fresh.payload, fresh.attempt) == ("pending", {"invoice": 3}, 0)
    assert queue.get_job(old).retried_as == new
    with pytest.raises(JobNotFound, match="no job with id 123456789"):
        queue.retry_dead(123456789)
    with pytest.raises(JobStateError, match=f"job {new} is not dead-lettered"):
        queue.retry_dead(new)


def test_cancel_through_the_client(queue, db):
    pending = queue.enqueue("q", 1)
    assert queue.cancel(pending) is True
    assert queue.get_job(pending).status == "cancelled"
    assert queue.cancel(pending) is False

    running = queue.enqueue("q", 2)
    c = claim_one(db)
    assert queue.cancel(running) is True
    assert complete(db, running, c.lease_token) is False
    assert queue.get_job(running).status == "cancelled"

    with pytest.raises(JobNotFound, match="no job with id 123456789"):
        queue.cancel(123456789)


def test_purge_through_the_client(queue, db):
    kept = queue.enqueue("a", 1)
    done = [queue.enqueue(name, 2) for name in ("a", "b")]
    for c in claim(db, ["a", "b"], batch_size=3):
        if c.id in done:
            complete(db, c.id, c.lease_token)
        else:
            db.execute("SELECT pyqueue.release(%s, %s)", [[c.id], [c.lease_token]])
    assert queue.purge() == 0  # within the 7-day retention
    assert queue.purge(older_than=timedelta(0), queue="b") == 1
    assert queue.purge(older_than=timedelta(0)) == 1
    assert [j.id for j in queue.list_jobs()] == [kept]


def test_configure_queue_through_the_client(queue, db):
    queue.configure_queue(
        "tuned",
        max_attempts=6,
        backoff_base=timedelta(hours=2),
        backoff_max=timedelta(hours=3),
        retention=timedelta(0),
    )
    job_id = queue.enqueue("tuned", {})
    assert queue.get_job(job_id).max_attempts == 6
    c = claim_one(db, "tuned")
    fail(db, job_id, c.lease_token)
    j = job(db, job_id)
    assert timedelta(hours=1) <= j["run_at"] - j["failed_at"] <= timedelta(hours=2)
    # retention 0: a finished job of this queue is purged at once.
    queue.cancel(job_id)
    assert queue.purge() == 1
    # The defaults of every other queue are untouched.
    assert queue.get_job(queue.enqueue("plain", {})).max_attempts == 3


# ---------------------------------------------------------------- transactions and NOTIFY


def test_enqueue_on_the_callers_connection_rolls_back_with_it(queue, dsn, db):
    db.execute("CREATE TABLE public.orders (id int PRIMARY KEY)")
    with psycopg.connect(dsn) as app:
        app.execute("INSERT INTO public.orders VALUES (1)")
        job_id = queue.enqueue("invoices", {"order": 1}, conn=app)
        assert job_id
        app.rollback()
        assert counts(db) == (0, 0)
        assert scalar(db, "SELECT count(*) FROM public.orders") == 0
        with pytest.raises(JobNotFound):
            queue.get_job(job_id)

        app.execute("INSERT INTO public.orders VALUES (2)")
        kept = queue.enqueue("invoices", {"order": 2}, conn=app)
        many = queue.enqueue_many("invoices", [3, 4], conn=app)
        assert counts(db) == (0, 0)  # not visible before commit
        app.commit()
    assert counts(db) == (3, 0)
    assert queue.get_job(kept).payload == {"order": 2}
    assert [queue.get_job(i).payload for i in many] == [3, 4]


def test_cancel_on_the_callers_connection_rolls_back_with_it(queue, dsn, db):
    job_id = queue.enqueue("q", {})
    with psycopg.connect(dsn) as app:
        assert queue.cancel(job_id, conn=app) is True
        app.rollback()
    assert queue.get_job(job_id).status == "pending"


def test_listeners_hear_the_queue_name_when_the_enqueue_commits(queue, dsn, db):
    db.execute("LISTEN pyqueue_jobs")
    with psycopg.connect(dsn) as app:
        queue.enqueue("reports", {}, conn=app)
        assert list(db.notifies(timeout=0.3)) == []
        app.commit()
    notes = list(db.notifies(timeout=5, stop_after=1))
    assert [(n.channel, n.payload) for n in notes] == [("pyqueue_jobs", "reports")]
    queue.enqueue_many("emails", [1, 2])
    notes = list(db.notifies(timeout=5, stop_after=1))
    assert [n.payload for n in notes] == ["emails"]


# ---------------------------------------------------------------- wait


def _later(seconds, action):
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()))
    thread.start()
    return thread


def test_wait_returns_soon_after_the_job_completes(queue, dsn, db):
    job_id = queue.enqueue("q", {})
    c = claim_one(db)

    def finish():
        with psycopg.connect(dsn, autocommit=True) as worker:
            complete(worker, job_id, c.lease_token, '{"done": true}')

    started = time.monotonic()
    thread = _later(0.3, finish)
    j = queue.wait(job_id, timeout=30)
    elapsed = time.monotonic() - started
    thread.join()
    assert (j.status, j.result, j.finished) == ("completed", {"done": True}, True)
    # Woken by NOTIFY: well before the 5 s re-read that would catch it otherwise.
    assert 0.3 <= elapsed < 4, elapsed


@pytest.mark.parametrize("ending", ["dead", "cancelled"])
def test_wait_returns_a_job_that_died_or_was_cancelled(queue, dsn, db, ending):
    job_id = queue.enqueue("q", {}, max_attempts=1)
    c = claim_one(db)

    def finish():
        with psycopg.connect(dsn, autocommit=True) as other:
            if ending == "dead":
                fail(other, job_id, c.lease_token, "no luck")
            else:
                other.execute("SELECT pyqueue.cancel(%s)", [job_id])

    started = time.monotonic()
    thread = _later(0.3, finish)
    j = queue.wait(job_id, timeout=30)
    thread.join()
    assert (j.status, j.finished) == (ending, True)
    assert time.monotonic() - started < 4


def test_wait_returns_the_unfinished_job_at_timeout(queue, db):
    job_id = queue.enqueue("q", {})
    claim_one(db)
    started = time.monotonic()
    j = queue.wait(job_id, timeout=0.5)
    elapsed = time.monotonic() - started
    assert (j.id, j.status, j.finished) == (job_id, "running", False)
    assert 0.5 <= elapsed < 4, elapsed


def test_wait_on_a_finished_job_returns_at_once_and_on_an_unknown_one_raises(queue, db):
    job_id = queue.enqueue("q", {})
    queue.cancel(job_id)
    started = time.monotonic()
    assert queue.wait(job_id, timeout=30).status == "cancelled"
    assert time.monotonic() - started < 4
    with pytest.raises(JobNotFound):
        queue.wait(123456789, timeout=1)


def test_wait_survives_a_recovered_lease(queue, dsn, db):
    """A lost lease is not an ending: wait keeps waiting until the retry finishes."""
    job_id = queue.enqueue("q", {}, max_attempts=2)
    claim_one(db)
    expire_lease(db, job_id)

    def recover_and_finish():
        with psycopg.connect(dsn, autocommit=True) as worker:
            second = claim_one(worker)  # recovers the expired lease, then claims
            assert second.attempt == 2
            complete(worker, job_id, second.lease_token)

    thread = _later(0.3, recover_and_finish)
    j = queue.wait(job_id, timeout=30)
    thread.join()
    assert (j.status, j.attempt) == ("completed", 2)


# ---------------------------------------------------------------- bad input

# Values JSON cannot hold, a mistake only Python can make; every other bad input
# is in tests/bad_input.py, run through each interface by tests/test_bad_input.py.
NOT_JSON_CALLS = [
    ("set payload", lambda q: q.enqueue("q", {1, 2}), "payload is not JSON"),
    ("NaN payload", lambda q: q.enqueue("q", {"x": math.nan}), "payload is not"),
    ("inf payload", lambda q: q.enqueue("q", [math.inf]), "payload is not JSON"),
    ("object payload", lambda q: q.enqueue("q", object()), "payload is not"),
    ("bytes payload", lambda q: q.enqueue("q", b"raw"), "payload is not JSON"),
    ("one bad in many", lambda q: q.enqueue_many("q", [1, {2}, 3]), "payloads[2] is not JSON"),
]


def test_a_value_json_cannot_hold_raises_invalid_payload_and_writes_nothing(queue, db):
    queue.enqueue("q", {"already": "here"})
    with writes_nothing(db):
        for what, call, words in NOT_JSON_CALLS:
            with pytest.raises(InvalidPayload, match=re.escape(words)):
                call(queue)
                pytest.fail(f"{what}: accepted")


def test_a_pending_job_cannot_be_replayed(queue, db):
    job_id = queue.enqueue("q", {})
    with pytest.raises(JobStateError, match="not dead-lettered") as raised:
        queue.retry_dead(job_id)
    assert isinstance(raised.value.__cause__, psycopg.Error)
    assert raised.value.__cause__.sqlstate == "55000"
    assert counts(db) == (1, 0)


def test_a_payload_over_the_queue_limit_raises_invalid_payload(queue, db):
    db.execute("SELECT pyqueue.configure_queue('small', max_payload_bytes => 100)")
    queue.enqueue("small", "fits")
    with pytest.raises(InvalidPayload, match="over the queue's limit of 100 bytes"):
        queue.enqueue("small", "x" * 500)
    with pytest.raises(InvalidPayload, match=r"payloads\[2\] is .* over the queue's limit"):
        queue.enqueue_many("small", ["fits", "x" * 500])
    assert counts(db) == (1, 0)


def test_a_payload_holding_a_nul_character_is_refused(queue, db):
    # JSON can carry \u0000, PostgreSQL's jsonb cannot: a clear payload error, nothing stored.
    with pytest.raises(InvalidPayload, match="payload"):
        queue.enqueue("q", {"text": "a\x00b"})
    assert counts(db) == (0, 0)


def test_a_pooled_connection_broken_while_idle_is_replaced(dsn, db):
    with pyqueue.Queue(dsn) as q:
        job_id = q.enqueue("emails", {})
        # What a server restart does to an idle pooled connection.
        # The timeout makes it wait until the backend has gone.
        db.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert q.get_job(job_id).status == "pending"
