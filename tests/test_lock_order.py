"""The lock order of the statements that update several job rows (sql/05_lock_order.sql).

A worker heartbeats its jobs on one connection while it stores their outcomes
on another; each statement locks many job rows. Taken in different orders,
the two wait for each other and PostgreSQL breaks the cycle by failing one
("deadlock detected"). Here the statements run at the same moment on the same
jobs, listed in different random orders, many times over, and the database
must report no deadlock at all.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.helpers import Conn, claim, scalar

ROUNDS = 25
JOBS = 300
# A deadlock is found after deadlock_timeout (1 s by default); short here so
# that a run on code that deadlocks ends soon, not so that deadlocks are missed.
FAST_DETECTION = "-c deadlock_timeout=20ms"

Statement = Callable[[Conn, list[int], list[Any]], None]


def heartbeat(conn: Conn, ids: list[int], tokens: list[Any]) -> None:
    conn.execute("SELECT count(*) FROM pyqueue.heartbeat(%s, %s, '30 seconds')", [ids, tokens])


def complete_batch(conn: Conn, ids: list[int], tokens: list[Any]) -> None:
    conn.execute("SELECT count(*) FROM pyqueue.complete_batch(%s, %s)", [ids, tokens])


def fail_batch(conn: Conn, ids: list[int], tokens: list[Any]) -> None:
    errors = ["boom"] * len(ids)
    conn.execute("SELECT count(*) FROM pyqueue.fail_batch(%s, %s, %s)", [ids, tokens, errors])


def release(conn: Conn, ids: list[int], tokens: list[Any]) -> None:
    conn.execute("SELECT count(*) FROM pyqueue.release(%s, %s)", [ids, tokens])


def deadlocks(db: Conn) -> int:
    db.execute("SELECT pg_stat_clear_snapshot()")
    return int(
        scalar(db, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    )


@pytest.mark.parametrize("finish", [complete_batch, fail_batch, release])
def test_heartbeats_and_outcomes_of_the_same_jobs_never_deadlock(
    dsn: str, db: Conn, finish: Statement
) -> None:
    rng = random.Random(24)
    before = deadlocks(db)
    plans: list[list[tuple[Statement, list[int], list[Any]]]] = [[], []]
    for _ in range(ROUNDS):
        db.execute("SELECT pyqueue.enqueue_batch('q', array_fill('{}'::jsonb, ARRAY[%s]))", [JOBS])
        jobs = claim(db, "q", JOBS)
        assert len(jobs) == JOBS
        token = jobs[0].lease_token
        for plan, statement in zip(plans, (heartbeat, finish), strict=True):
            ids = [j.id for j in jobs]
            rng.shuffle(ids)
            plan.append((statement, ids, [token] * len(ids)))
    caught = run_sides(dsn, plans)

    # A backend sends its statistics when it ends; wait for those of the
    # sessions that caught a deadlock, if any did.
    deadline = time.monotonic() + 5
    while deadlocks(db) < before + caught and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (caught, deadlocks(db) - before) == (0, 0)
    assert scalar(db, "SELECT count(*) FROM pyqueue.jobs WHERE status = 'running'") == 0


def run_sides(dsn: str, plans: list[list[tuple[Statement, list[int], list[Any]]]]) -> int:
    """Run plans[i] on connection i, step k of every plan at the same moment;
    return how many statements failed with "deadlock detected"."""
    conninfo = make_conninfo(dsn, options=FAST_DETECTION)
    barrier = threading.Barrier(len(plans))
    caught: list[int] = []

    def side(plan: list[tuple[Statement, list[int], list[Any]]]) -> None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            for statement, ids, tokens in plan:
                barrier.wait(timeout=30)
                try:
                    statement(conn, ids, tokens)
                except psycopg.errors.DeadlockDetected:
                    caught.append(1)  # list.append is atomic

    threads = [threading.Thread(target=side, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(caught)
