"""The worker's parts, each alone, through its public methods, against a real database.

Each test builds only the part it is about, with a State and the queues it
reads or writes, and runs it with asyncio.run. How the parts work together is
tests/test_worker.py's subject.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pyqueue.jobs import ClaimedJob
from pyqueue.worker.claimer import Claimer
from pyqueue.worker.completer import Completer
from pyqueue.worker.connection import Reconnecting
from pyqueue.worker.context import JobContext
from pyqueue.worker.executor import Executor
from pyqueue.worker.leases import LeaseKeeper
from pyqueue.worker.listener import Listener
from pyqueue.worker.outcome import Held, Outcomes
from pyqueue.worker.state import State
from tests.helpers import claim, dead, enqueue, expire_lease, job, scalar, status

T = TypeVar("T")


def with_database(dsn: str, test: Callable[[Reconnecting], Awaitable[T]]) -> T:
    """asyncio.run(test(db)) with a worker connection to the test database, closed after."""

    async def main() -> T:
        db = Reconnecting(dsn, "test")
        try:
            return await test(db)
        finally:
            await db.close()

    return asyncio.run(main())


def state(concurrency: int = 4, prefetch: int = 0) -> State:
    return State(concurrency, prefetch)


def held(job: ClaimedJob, result: str | None = None, error: str | None = None) -> Held:
    done = Held(job, JobContext(job, asyncio.get_running_loop(), send_nothing))
    done.finished, done.result, done.error = True, result, error
    return done


async def send_nothing(job: ClaimedJob, pct: int, message: str | None) -> None:
    return None


def claimer(db: Reconnecting, shared: State, started: list[ClaimedJob], **options: Any) -> Claimer:
    settings = {"queues": ["q"], "name": "w1", "batch_size": 10, "lease": 30.0}
    return Claimer(db, shared, started.append, **{**settings, "poll_interval": 0.05, **options})


# The claimer ------------------------------------------------------------------------


def test_the_claimer_starts_what_it_claims_and_stops_when_told(dsn, db):
    ids = [enqueue(db) for _ in range(3)]
    started: list[ClaimedJob] = []

    async def test(conn: Reconnecting) -> None:
        shared = state()
        part = claimer(conn, shared, started)
        running = asyncio.create_task(part.run())
        while len(started) < 3:
            await asyncio.sleep(0.01)
        shared.stop()
        await asyncio.wait_for(running, 5)

    with_database(dsn, test)
    assert [j.id for j in started] == ids
    assert {status(db, i) for i in ids} == {"running"}


def test_the_claimer_claims_only_for_free_slots(dsn, db):
    for _ in range(5):
        enqueue(db)
    started: list[ClaimedJob] = []

    async def test(conn: Reconnecting) -> int:
        shared = state(concurrency=2)
        part = claimer(conn, shared, started)
        assert await part.room_to_claim() == 2
        rows = await part.claim(await part.room_to_claim())
        return int(rows.rowcount)

    assert with_database(dsn, test) == 2
    assert scalar(db, "SELECT count(*) FROM pyqueue.jobs WHERE status = 'running'") == 2


def test_a_rate_limited_claimer_waits_for_budget_not_for_wake_ups(dsn, db):
    """Budget spent: the claimer sleeps until claim_wait says budget returns,
    though a wake-up comes every 10 ms and its poll interval is long."""
    db.execute("SELECT pyqueue.configure_queue('q', rate_limit => 2, rate_period => '1 second')")
    for _ in range(6):
        enqueue(db)
    started: list[ClaimedJob] = []
    claims: list[float] = []

    async def test(conn: Reconnecting) -> float:
        shared = state(concurrency=10)
        part = claimer(conn, shared, started, poll_interval=30.0)
        send = part.claim

        async def counted(size: int, ahead: int = 0) -> Any:
            claims.append(asyncio.get_running_loop().time())
            return await send(size, ahead)

        part.claim = counted  # type: ignore[method-assign]
        running = asyncio.create_task(part.run())
        begin = asyncio.get_running_loop().time()
        while len(started) < 4:
            shared.wake.set()  # as a NOTIFY storm would
            await asyncio.sleep(0.01)
        took = asyncio.get_running_loop().time() - begin
        shared.stop()
        await asyncio.wait_for(running, 5)
        return took

    took = with_database(dsn, test)
    assert len(started) == 4
    assert 0.8 < took < 5  # the second pair at the next window, not after 30 s
    assert len(claims) <= 6  # no claim per wake-up: about 100 wake-ups came


def test_the_claimer_hands_back_jobs_it_never_started(dsn, db):
    ids = [enqueue(db) for _ in range(2)]
    jobs = claim(db, batch_size=2)

    async def test(conn: Reconnecting) -> None:
        await claimer(conn, state(), []).hand_back(jobs)

    with_database(dsn, test)
    assert [(job(db, i)["status"], job(db, i)["attempt"]) for i in ids] == [("pending", 0)] * 2


# The executor -----------------------------------------------------------------------


def test_the_executor_queues_each_outcome_and_frees_the_slot(dsn, db):
    enqueue(db, "ok", '{"n": 1}')
    enqueue(db, "boom")
    jobs = claim(db, ["ok", "boom"], batch_size=2)

    def ok(payload: Any, job: JobContext) -> Any:
        return {"doubled": payload["n"] * 2}

    async def boom(payload: Any, job: JobContext) -> None:
        raise ValueError("no such order")

    async def test(conn: Reconnecting) -> list[Held]:
        shared = state()
        outcomes: Outcomes = asyncio.Queue()
        part = Executor({"ok": ok, "boom": boom}, shared, outcomes, conn, max_abandoned=1)
        try:
            for claimed in jobs:
                part.start(claimed)
            assert shared.running == 2 and set(shared.held) == {j.id for j in jobs}
            done: list[Held] = []
            while len(done) < len(jobs):
                done += await asyncio.wait_for(outcomes.get(), 10)
        finally:
            part.close()
        assert shared.running == 0
        return sorted(done, key=lambda h: h.job.queue)

    failed, succeeded = with_database(dsn, test)
    assert (succeeded.result, succeeded.error) == ('{"doubled": 2}', None)
    assert failed.error == "no such order"
    assert failed.traceback is not None and "ValueError: no such order" in failed.traceback


def test_the_executor_fails_a_handler_still_running_after_the_grace_period(dsn, db):
    enqueue(db, "slow")
    jobs = claim(db, "slow")

    async def slow(payload: Any, job: JobContext) -> None:
        await asyncio.sleep(60)

    async def test(conn: Reconnecting) -> Held:
        shared = state()
        outcomes: Outcomes = asyncio.Queue()
        part = Executor({"slow": slow}, shared, outcomes, conn, max_abandoned=1)
        part.start(jobs[0])
        await part.finish(grace=0.1)
        part.close()
        [late] = outcomes.get_nowait()
        assert outcomes.empty()
        return late

    late = with_database(dsn, test)
    assert late.error == "the worker stopped before the handler finished (grace period 0.1 s)"


def test_the_executor_keeps_jobs_claimed_ahead_until_a_slot_frees(dsn, db):
    for _ in range(3):
        enqueue(db, "slow")
    jobs = claim(db, "slow", batch_size=3)
    started: list[int] = []
    release = threading.Event()

    def slow(payload: Any, job: JobContext) -> None:  # on a thread: starts at once
        started.append(job.id)
        release.wait(30)

    async def test(conn: Reconnecting) -> None:
        shared = state(concurrency=1, prefetch=2)
        outcomes: Outcomes = asyncio.Queue()
        part = Executor({"slow": slow}, shared, outcomes, conn, max_abandoned=1)
        try:
            for claimed in jobs:
                part.start(claimed)
            await asyncio.sleep(0.05)
            assert (started, shared.running) == ([jobs[0].id], 1)
            assert [h.job.id for h in shared.waiting] == [j.id for j in jobs[1:]]
            # The lease keeper finds the running job and the first waiting one
            # lost in one heartbeat: the waiting one must not start meanwhile.
            first, second = shared.held[jobs[0].id], shared.held[jobs[1].id]
            part.abandon(first)
            part.abandon(second)
            await asyncio.sleep(0.05)
            assert started == [jobs[0].id, jobs[2].id]
            assert set(shared.held) == {jobs[2].id}
            assert [j.id for j in part.take_waiting()] == []
            assert part.abandoned_threads == 1
        finally:
            release.set()
            part.close()

    with_database(dsn, test)


# The completer ----------------------------------------------------------------------


def test_the_completer_stores_a_burst_of_successes_and_failures(dsn, db, caplog):
    caplog.set_level(logging.WARNING, logger="pyqueue.worker")
    ids = [enqueue(db, max_attempts=2) for _ in range(4)]
    jobs = claim(db, batch_size=4)
    db.execute("SELECT pyqueue.cancel(%s)", [ids[3]])  # its outcome finds it lost

    async def test(conn: Reconnecting) -> None:
        shared = state()
        burst = [
            held(jobs[0], result='{"ok": true}'),
            held(jobs[1], error="boom"),
            held(jobs[2]),
            held(jobs[3], result="1"),
        ]
        shared.held.update({h.job.id: h for h in burst})
        await Completer(conn, shared, asyncio.Queue()).store(burst)
        assert shared.held == {}

    with_database(dsn, test)
    assert [status(db, i) for i in ids] == ["completed", "pending", "completed", "cancelled"]
    assert job(db, ids[0])["result"] == {"ok": True}
    assert job(db, ids[1])["error"] == "boom"
    assert f"job {ids[1]} (q) failed on attempt 1 of 2, will be retried: boom" in caplog.text
    assert f"job {ids[3]} (q) was lost" in caplog.text


def test_the_completer_fails_only_the_job_whose_result_the_database_refuses(dsn, db, caplog):
    caplog.set_level(logging.DEBUG, logger="pyqueue.worker")
    ids = [enqueue(db, max_attempts=1) for _ in range(3)]
    jobs = claim(db, batch_size=3)

    async def test(conn: Reconnecting) -> None:
        burst = [held(jobs[0], "1"), held(jobs[1], '{"n": 1e1000000}'), held(jobs[2], "3")]
        await Completer(conn, state(), asyncio.Queue()).store(burst)

    with_database(dsn, test)
    assert [status(db, i) for i in ids] == ["completed", "dead", "completed"]
    assert "the database refused the handler's result" in dead(db, ids[1])["error"]
    assert "was lost" not in caplog.text


def test_the_completer_stores_every_list_queued_until_drained(dsn, db):
    ids = [enqueue(db) for _ in range(3)]
    jobs = claim(db, batch_size=3)

    async def test(conn: Reconnecting) -> None:
        outcomes: Outcomes = asyncio.Queue()
        part = Completer(conn, state(), outcomes)
        outcomes.put_nowait([held(jobs[0], result='"first"')])
        outcomes.put_nowait([held(jobs[1], result='"second"'), held(jobs[2], result='"third"')])
        running = asyncio.create_task(part.run())
        # join() returns only once every list taken is marked done.
        await asyncio.wait_for(outcomes.join(), 10)
        running.cancel()
        assert outcomes.empty()

    with_database(dsn, test)
    assert [(status(db, i), job(db, i)["result"]) for i in ids] == [
        ("completed", "first"),
        ("completed", "second"),
        ("completed", "third"),
    ]


# The lease keeper -------------------------------------------------------------------


def test_the_lease_keeper_extends_held_leases_and_marks_lost_jobs(dsn, db, caplog):
    caplog.set_level(logging.WARNING, logger="pyqueue.worker")
    ids = [enqueue(db) for _ in range(2)]
    jobs = claim(db, batch_size=2, lease="2 seconds")
    db.execute("SELECT pyqueue.cancel(%s)", [ids[1]])
    before = job(db, ids[0])["locked_until"]

    given_up: list[int] = []

    async def test(conn: Reconnecting) -> list[bool]:
        shared = state()
        running = [held(j) for j in jobs]
        for h in running:
            h.finished = False
            shared.held[h.job.id] = h
        keeper = LeaseKeeper(
            conn, shared, lease=60, heartbeat_interval=20,
            on_lost=lambda h: given_up.append(h.job.id),
        )  # fmt: skip
        await keeper.heartbeat()
        return [h.lost for h in running]

    assert with_database(dsn, test) == [False, True]
    assert given_up == [ids[1]]  # handed on, so that the executor stops waiting for it
    assert (job(db, ids[0])["locked_until"] - before).total_seconds() > 50
    assert f"job {ids[1]} (q) was lost while its handler runs" in caplog.text


def test_the_lease_keeper_recovers_expired_leases(dsn, db):
    job_id = enqueue(db)
    claim(db)
    expire_lease(db, job_id)

    async def test(conn: Reconnecting) -> int:
        keeper = LeaseKeeper(conn, state(), lease=30, heartbeat_interval=10, on_lost=print)
        return await keeper.recover()

    assert with_database(dsn, test) == 1
    assert status(db, job_id) == "pending"


# The listener -----------------------------------------------------------------------


def test_the_listener_wakes_the_claimer_for_its_queues_only(dsn, db):
    async def test(conn: Reconnecting) -> tuple[bool, bool]:
        shared = state()
        part = Listener(conn, shared, ["mine"], retry_interval=1)
        running = asyncio.create_task(part.run())
        try:
            await asyncio.wait_for(part.listening.wait(), 10)
            shared.wake.clear()
            await asyncio.to_thread(enqueue, db, "theirs")
            await asyncio.sleep(0.3)
            woken_by_theirs = shared.wake.is_set()
            await asyncio.to_thread(enqueue, db, "mine")
            await asyncio.wait_for(shared.wake.wait(), 10)
            return woken_by_theirs, shared.wake.is_set()
        finally:
            running.cancel()

    assert with_database(dsn, test) == (False, True)
