"""Concurrent callers: claims never share a job, idempotency keys never give two jobs.

Each thread has its own connection, as separate workers or web processes do,
and a barrier starts them together.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from tests.helpers import claim, counts, enqueue, scalar

THREADS = 4


def run_together(dsn: str, count: int, work: Callable[[int, Any, threading.Barrier], Any]):
    """Run work(index, connection, barrier) in `count` threads; return their results."""
    barrier = threading.Barrier(count, timeout=60)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def main(index: int) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                results[index] = work(index, conn, barrier)
        except BaseException as error:
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=main, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if errors:
        raise errors[0]
    return results


def drain(index: int, conn: Any, barrier: threading.Barrier) -> list[int]:
    """A worker: claim batches until none is left, completing each batch."""
    barrier.wait()
    got: list[int] = []
    while batch := claim(conn, "q", batch_size=20, worker=f"worker-{index}"):
        got += [c.id for c in batch]
        conn.execute(
            "SELECT pyqueue.complete_batch(%s, %s)",
            [[c.id for c in batch], [c.lease_token for c in batch]],
        )
    return got


def test_concurrent_claimers_never_get_the_same_job(dsn, db):
    total = 2000
    db.execute("SELECT pyqueue.enqueue_batch('q', array_fill('{}'::jsonb, ARRAY[%s]))", [total])
    per_worker = run_together(dsn, THREADS, drain)
    everything = [job_id for got in per_worker for job_id in got]
    assert len(everything) == len(set(everything)) == total
    assert sum(1 for got in per_worker if got) >= 2, "the claims did not overlap at all"
    stats = db.execute(
        "SELECT count(*) FILTER (WHERE status = 'completed'), max(attempt), min(attempt)"
        " FROM pyqueue.jobs"
    ).fetchone()
    assert stats == (total, 1, 1)


def test_a_claim_skips_jobs_another_open_claim_holds_instead_of_waiting(dsn, db):
    first, second, third = (enqueue(db, payload=str(n)) for n in range(3))
    with psycopg.connect(dsn) as holder:  # a transaction left open: its row locks stay
        assert [c.id for c in claim(holder)] == [first]
        # A claim that waited for the holder's lock would raise here, not hang.
        db.execute("SET lock_timeout = '1s'")
        assert [c.id for c in claim(db, batch_size=3)] == [second, third]
        holder.rollback()
    assert [c.id for c in claim(db, batch_size=3)] == [first]


def test_concurrent_claimers_recover_each_expired_job_once(dsn, db):
    total = 300
    db.execute("SELECT pyqueue.enqueue_batch('q', array_fill('{}'::jsonb, ARRAY[%s]))", [total])
    assert len(claim(db, "q", batch_size=total, worker="crashed")) == total
    db.execute("UPDATE pyqueue.jobs SET locked_until = now() - interval '1 second'")
    per_worker = run_together(dsn, THREADS, drain)
    everything = [job_id for got in per_worker for job_id in got]
    # recover_expired runs inside the claims, at most 1000 jobs at a time, under a lock.
    assert len(everything) == len(set(everything)) == total
    stats = db.execute(
        "SELECT count(*) FILTER (WHERE status = 'completed'), min(attempt), max(attempt)"
        " FROM pyqueue.jobs"
    ).fetchone()
    assert stats == (total, 2, 2)


def test_concurrent_enqueues_with_the_same_key_give_one_job(dsn, db):
    keys = [f"order-{n}" for n in range(25)]

    def enqueue_each(index: int, conn: Any, barrier: threading.Barrier) -> list[int]:
        ids = []
        for n, key in enumerate(keys):
            barrier.wait()
            if n % 2:  # inside a transaction that stays open a moment after the insert
                with conn.transaction():
                    ids.append(
                        scalar(
                            conn,
                            "SELECT pyqueue.enqueue('q', %s::jsonb, idempotency_key => %s)",
                            [str(index), key],
                        )
                    )
                    conn.execute("SELECT pg_sleep(0.005)")
            else:
                ids.append(
                    scalar(
                        conn,
                        "SELECT pyqueue.enqueue('q', %s::jsonb, idempotency_key => %s)",
                        [str(index), key],
                    )
                )
        return ids

    per_thread = run_together(dsn, THREADS * 2, enqueue_each)
    for n, key in enumerate(keys):
        ids = {ids[n] for ids in per_thread}
        assert len(ids) == 1, (key, ids)
    assert counts(db) == (len(keys), 0)
    assert scalar(db, "SELECT count(DISTINCT idempotency_key) FROM pyqueue.jobs") == len(keys)


def test_concurrent_batches_with_overlapping_keys_give_one_job_per_key(dsn, db):
    keys = [f"k{n}" for n in range(40)]

    def enqueue_batches(index: int, conn: Any, barrier: threading.Barrier) -> dict[str, int]:
        seen: dict[str, int] = {}
        shuffle = random.Random(index)
        for _ in range(5):
            chosen = shuffle.sample(keys, 15)
            barrier.wait()
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT pyqueue.enqueue_batch('q', %s::jsonb[], idempotency_keys => %s)",
                    [["{}"] * len(chosen), chosen],
                )
            ]
            for key, job_id in zip(chosen, ids, strict=True):
                assert seen.setdefault(key, job_id) == job_id
        return seen

    per_thread = run_together(dsn, THREADS, enqueue_batches)
    by_key: dict[str, set[int]] = {}
    for seen in per_thread:
        for key, job_id in seen.items():
            by_key.setdefault(key, set()).add(job_id)
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    assert counts(db) == (len(by_key), 0)
