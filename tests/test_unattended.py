"""A worker left alone: it maintains the database, and gives up on runs past their timeout.

Workers run in threads of the test process here (tests/test_worker.py's `running`);
tests/test_schedules_fleet.py runs schedules with real worker processes.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from test_worker import running, wait_until

from pyqueue import HungHandlers, Queue, Worker
from tests.helpers import scalar

FAST = {"poll_interval": 0.05, "lease": 2.0, "heartbeat_interval": 0.3}


def finished_long_ago(db, queue: Queue, count: int) -> list[int]:
    """Jobs completed (by hand, through SQL) and, as the clock would have it, 8 days ago."""
    ids = queue.enqueue_many("old", [{} for _ in range(count)])
    claimed = db.execute(
        "SELECT id, lease_token FROM pyqueue.claim_batch('{old}', 'by hand', %s)", [count]
    ).fetchall()
    db.execute(
        "SELECT pyqueue.complete_batch(%s, %s)", [[r[0] for r in claimed], [r[1] for r in claimed]]
    )
    db.execute(
        "UPDATE pyqueue.jobs SET finished_at = now() - interval '8 days' WHERE id = ANY(%s)", [ids]
    )
    return ids


def test_workers_alone_delete_finished_jobs_past_retention(dsn, db, queue):
    old = finished_long_ago(db, queue, 25)
    recent = queue.enqueue("fresh", {})
    worker = Worker(maintenance_interval=0.2, **FAST)

    @worker.handler("fresh")
    def fresh(payload, job):
        return "done"

    with running(worker, dsn):
        assert queue.wait(recent, timeout=15).status == "completed"
        gone = "SELECT count(*) = 0 FROM pyqueue.jobs WHERE id = ANY(%s)"
        wait_until(lambda: scalar(db, gone, [old]), what="the old jobs purged")
    # The job finished just now is kept: its retention has not run out.
    assert queue.get_job(recent).status == "completed"
    assert scalar(db, "SELECT last_result->>'ran' FROM pyqueue.maintenance") == "true"


def test_a_worker_without_maintenance_leaves_it_to_the_operator(dsn, db, queue):
    old = finished_long_ago(db, queue, 3)
    worker = Worker(maintenance_interval=None, **FAST)

    @worker.handler("fresh")
    def fresh(payload, job):
        return "done"

    with running(worker, dsn):
        assert queue.wait(queue.enqueue("fresh", {}), timeout=15).status == "completed"
    assert scalar(db, "SELECT count(*) FROM pyqueue.jobs WHERE id = ANY(%s)", [old]) == 3
    assert queue.maintain()["purged"] == 3


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_a_hung_handler_is_failed_at_its_timeout_and_its_slot_reused(dsn, db, queue, kind):
    worker = Worker(concurrency=1, **FAST)
    release = threading.Event()
    late: list[str] = []

    if kind == "plain":

        @worker.handler("hangs")
        def hangs(payload, job):
            if payload.get("hang"):
                release.wait(30)
                late.append("returned")
            return "done"

    else:

        @worker.handler("hangs")
        async def hangs_async(payload, job):
            if payload.get("hang"):
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    late.append("cancelled")
                    raise
            return "done"

    hung = queue.enqueue("hangs", {"hang": True}, timeout=timedelta(seconds=1), max_attempts=1)
    with running(worker, dsn):
        job = queue.wait(hung, timeout=15)
        assert job.status == "dead"
        assert job.error == "timed out: attempt 1 ran longer than its timeout of 00:00:01"
        # The only slot is free again, though the first handler never returned.
        after = queue.enqueue("hangs", {})
        assert queue.wait(after, timeout=15).result == "done"
        if kind == "async":
            wait_until(lambda: late == ["cancelled"], what="the async handler cancelled")
        else:
            release.set()
            wait_until(lambda: late == ["returned"], what="the abandoned thread returned")
    # Whatever the abandoned handler did after its timeout was not recorded.
    job = queue.get_job(hung)
    assert (job.status, job.result) == ("dead", None)


def test_too_many_hung_threads_stop_the_worker_for_a_fresh_start(dsn, queue):
    worker = Worker(concurrency=1, max_abandoned_threads=1, **FAST)
    release = threading.Event()

    @worker.handler("hangs")
    def hangs(payload, job):
        release.wait(30)

    for _ in range(2):
        queue.enqueue("hangs", {}, timeout=timedelta(seconds=0.5), max_attempts=1)
    try:
        with (
            pytest.raises(HungHandlers, match="2 handler threads still run jobs the worker"),
            running(worker, dsn) as thread,
        ):
            thread.join(30)
    finally:
        release.set()


def test_schedules_from_python(queue, db):
    next_run = queue.schedule("nightly", "0 3 * * *", "reports", {"kind": "nightly"},
                              tz="Europe/Paris", priority=1)  # fmt: skip
    assert scalar(db, "SELECT %s AT TIME ZONE 'Europe/Paris'", [next_run]).hour == 3
    (found,) = queue.schedules()
    assert (found.name, found.cron, found.tz, found.queue) == (
        "nightly", "0 3 * * *", "Europe/Paris", "reports"
    )  # fmt: skip
    assert (found.payload, found.priority, found.next_run_at) == ({"kind": "nightly"}, 1, next_run)
    assert queue.unschedule("nightly") is True
    assert queue.unschedule("nightly") is False
    assert queue.schedules() == []
