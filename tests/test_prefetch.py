"""A worker's prefetch: jobs claimed ahead of its handler slots, and the bound on them.

Each test runs real Worker objects in threads against the test database, with
handlers held on threading events so that what a worker holds can be counted
in the jobs table while it is busy.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pyqueue import InvalidArgument
from pyqueue.worker import Worker
from tests.helpers import running, scalar, wait_until

FAST = {"poll_interval": 0.05}


def held_by(db: Any, worker: Worker) -> int:
    return int(
        scalar(
            db,
            "SELECT count(*) FROM pyqueue.jobs WHERE status = 'running' AND worker = %s",
            [worker.name],
        )
    )


def blocked_worker(
    concurrency: int, prefetch: int, release: threading.Event, queue: str = "q"
) -> tuple[Worker, list[int]]:
    """A worker whose handlers wait for `release`; the list has the jobs started."""
    worker = Worker(concurrency=concurrency, prefetch=prefetch, batch_size=10, **FAST)
    started: list[int] = []

    @worker.handler(queue)
    def handle(payload: Any, job: Any) -> None:
        started.append(job.id)
        assert release.wait(30)

    return worker, started


def test_a_busy_worker_holds_concurrency_plus_prefetch_jobs_and_no_more(dsn, db, queue):
    release = threading.Event()
    worker, started = blocked_worker(concurrency=2, prefetch=3, release=release)
    ids = queue.enqueue_many("q", [{}] * 20)
    with running(worker, dsn):
        wait_until(lambda: len(started) == 2, what="both slots busy")
        wait_until(lambda: held_by(db, worker) == 5, what="three jobs claimed ahead")
        # Claims go on while the slots are busy; the bound holds through them.
        for _ in range(10):
            assert held_by(db, worker) == 5
            assert len(started) == 2
        release.set()
        wait_until(
            lambda: all(queue.get_job(i).status == "completed" for i in ids),
            what="every job to complete",
        )
    assert sorted(started) == ids  # each job ran once, in the order of the line


def test_jobs_claimed_ahead_are_handed_back_unstarted_at_a_stop(dsn, db, queue):
    release = threading.Event()
    worker, started = blocked_worker(concurrency=2, prefetch=4, release=release)
    ids = queue.enqueue_many("q", [{}] * 10)
    with running(worker, dsn) as thread:
        wait_until(lambda: held_by(db, worker) == 6, what="four jobs claimed ahead")
        worker.stop()
        release.set()  # the two running handlers finish within the grace period
        wait_until(lambda: not thread.is_alive(), what="the worker to stop")
    jobs = {i: queue.get_job(i) for i in ids}
    assert sorted(started) == ids[:2]
    assert [(jobs[i].status, jobs[i].attempt) for i in ids[:2]] == [("completed", 1)] * 2
    # The four waiting ones are pending again, their claim not counted as an attempt.
    assert [(jobs[i].status, jobs[i].attempt) for i in ids[2:]] == [("pending", 0)] * 8


def test_a_slow_worker_leaves_the_rest_to_a_fast_one(dsn, db, queue):
    """Two workers of unequal speed: the slow one holds no more than its bound,
    and the fast one runs everything else while the slow one is stuck."""
    release = threading.Event()
    slow, slow_started = blocked_worker(concurrency=1, prefetch=2, release=release)
    fast = Worker(concurrency=4, batch_size=10, **FAST)
    fast_ran: list[int] = []

    @fast.handler("q")
    def handle(payload: Any, job: Any) -> None:
        fast_ran.append(job.id)

    ids = queue.enqueue_many("q", [{}] * 40)
    with running(slow, dsn):
        wait_until(lambda: held_by(db, slow) == 3, what="the slow worker to fill its bound")
        with running(fast, dsn):
            wait_until(lambda: len(fast_ran) == 37, what="the fast worker to run the rest")
            assert held_by(db, slow) == 3
            release.set()
            wait_until(
                lambda: all(queue.get_job(i).status == "completed" for i in ids),
                what="every job to complete",
            )
    assert len(slow_started) == 3 and sorted(slow_started + fast_ran) == ids


def test_no_job_of_a_limited_queue_waits_in_a_worker_for_a_slot(dsn, db, queue):
    """A fleet-wide limit counts the jobs a worker holds: prefetch takes none of
    a limited queue's, so a second worker gets the limit's room."""
    db.execute("SELECT pyqueue.configure_queue('limited', concurrency => 3)")
    release = threading.Event()
    first, first_started = blocked_worker(1, prefetch=5, release=release, queue="limited")
    second, second_started = blocked_worker(2, prefetch=5, release=release, queue="limited")
    ids = queue.enqueue_many("limited", [{}] * 10)
    with running(first, dsn):
        wait_until(lambda: len(first_started) == 1, what="the first worker's slot busy")
        with running(second, dsn):
            wait_until(lambda: len(second_started) == 2, what="the second worker's slots")
            assert (held_by(db, first), held_by(db, second)) == (1, 2)
            release.set()
            wait_until(
                lambda: all(queue.get_job(i).status == "completed" for i in ids),
                what="every job to complete",
            )


@pytest.mark.parametrize("prefetch", [-1, 10001, 1.5, True, "3"])
def test_prefetch_must_be_an_integer_from_0_to_10000(prefetch):
    with pytest.raises(InvalidArgument, match="prefetch must be an integer from 0 to 10000"):
        Worker(prefetch=prefetch)


def test_prefetch_defaults_to_the_batch_size():
    assert Worker(batch_size=7).settings.prefetch == 7
    assert Worker(batch_size=7, prefetch=0).settings.prefetch == 0
