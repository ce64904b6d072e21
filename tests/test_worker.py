"""The worker runner in this process: each test runs a Worker in a thread and stops it.

Real PostgreSQL (the `dsn` fixture's fresh database). Bounds on time are
liveness bounds, kept generous because the machine is shared.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from pyqueue import SCHEMA_VERSION, InvalidArgument, SchemaError
from pyqueue.worker import JobContext, Worker, plain
from pyqueue.worker.claimer import Claimer
from pyqueue.worker.executor import Executor
from tests.helpers import enqueue, running, status, wait_until

FAST = {"poll_interval": 0.05}
# Waits until those sessions have ended: the test's own client then finds its
# idle connection dead before using it, rather than racing the termination.
TERMINATE_OTHERS = (
    "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


def test_sync_and_async_handlers_store_their_results(dsn, queue):
    worker = Worker(**FAST)
    seen: list[JobContext] = []

    @worker.handler("add")
    def add(payload, job):
        seen.append(job)
        return {"sum": payload["a"] + payload["b"]}

    @worker.handler("mul")
    async def mul(payload, job):
        await asyncio.sleep(0.01)
        return payload["a"] * payload["b"]

    with running(worker, dsn):
        added = queue.enqueue("add", {"a": 2, "b": 3})
        multiplied = queue.enqueue("mul", {"a": 4, "b": 5})
        nothing = queue.enqueue("add", {"a": 0, "b": 0})
        jobs = [queue.wait(j, timeout=15) for j in (added, multiplied, nothing)]

    assert [j.status for j in jobs] == ["completed"] * 3
    assert jobs[0].result == {"sum": 5}
    assert jobs[1].result == 20
    assert jobs[2].result == {"sum": 0}
    assert jobs[0].worker == worker.name
    first = next(j for j in seen if j.id == added)
    assert (first.queue, first.attempt, first.max_attempts) == ("add", 1, 3)


def test_a_handler_gets_each_payload_as_it_was_enqueued(dsn, db, queue):
    # The worker reads claimed rows in binary; a payload must not change on
    # the way, whatever JSON it holds.
    payloads = [
        {"text": 'grüße, 日本, 🚀, "quoted" \\ back\nslash', "empty": ""},
        {"nested": {"list": [1, [2, [3, None]], {"deep": True}]}, "false": False},
        {"big": 2**62, "negative": -17, "float": 0.1},
        [1, "two", None],
        "just a string",
        12345,
        None,
    ]
    worker = Worker(**FAST)
    received: dict[int, Any] = {}

    @worker.handler("payloads")
    def record(payload, job):
        received[job.id] = payload

    ids = [queue.enqueue("payloads", p) for p in payloads]
    with running(worker, dsn):
        assert all(queue.wait(i, timeout=15).status == "completed" for i in ids)

    assert [received[i] for i in ids] == payloads
    stored = dict(db.execute("SELECT id, payload FROM pyqueue.jobs WHERE id = ANY(%s)", [ids]))
    assert [stored[i] for i in ids] == payloads


def test_a_failing_handler_is_retried_with_backoff_then_dead_lettered(dsn, db, queue):
    worker = Worker(**FAST)
    runs: list[tuple[int, float]] = []

    @worker.handler("flaky")
    def flaky(payload, job):
        runs.append((job.attempt, time.monotonic()))
        raise ValueError(f"boom on attempt {job.attempt}")

    job_id = enqueue(db, "flaky", max_attempts=3, backoff_base="300 ms", backoff_max="1 s")
    with running(worker, dsn):
        job = queue.wait(job_id, timeout=15)

    assert job.status == "dead"
    assert [attempt for attempt, _ in runs] == [1, 2, 3]
    # Equal jitter: the wait after attempt n is in [ceiling/2, ceiling], ceiling 0.3 s * 2^(n-1).
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(runs)]
    assert gaps[0] >= 0.15 and gaps[1] >= 0.3, gaps
    assert job.error == "boom on attempt 3"
    assert job.traceback is not None
    assert "ValueError: boom on attempt 3" in job.traceback
    assert "in flaky" in job.traceback


def test_a_retry_keeps_the_last_error_until_it_succeeds(dsn, db, queue):
    worker = Worker(**FAST)

    @worker.handler("second-time-lucky")
    def lucky(payload, job):
        if job.attempt == 1:
            raise RuntimeError("first run fails")
        return "ok"

    job_id = enqueue(db, "second-time-lucky", backoff_base="10 ms", backoff_max="20 ms")
    with running(worker, dsn):
        job = queue.wait(job_id, timeout=15)
    assert (job.status, job.attempt, job.result) == ("completed", 2, "ok")
    assert job.error == "first run fails"


def test_a_result_json_cannot_hold_fails_the_job_clearly(dsn, queue):
    worker = Worker(**FAST)

    @worker.handler("sets")
    def sets(payload, job):
        return {"ids": {1, 2}}

    job_id = queue.enqueue("sets", {}, max_attempts=1)
    with running(worker, dsn):
        job = queue.wait(job_id, timeout=15)
    assert job.status == "dead"
    assert job.error is not None
    assert "the handler's result is not JSON-serialisable" in job.error
    assert "set" in job.error


def test_a_result_with_a_nul_character_fails_only_its_own_job(dsn, queue):
    worker = Worker(concurrency=4, **FAST)
    gate = threading.Barrier(3, timeout=10)

    @worker.handler("nul")
    def nul(payload, job):
        gate.wait()  # all three finish together, so their results go in one batch
        return {"text": "\u0000"} if payload["bad"] else {"text": "fine"}

    ids = [queue.enqueue("nul", {"bad": bad}, max_attempts=1) for bad in (False, True, False)]
    with running(worker, dsn):
        jobs = [queue.wait(j, timeout=15) for j in ids]
    assert [j.status for j in jobs] == ["completed", "dead", "completed"]
    assert jobs[0].result == {"text": "fine"}
    assert jobs[1].error is not None
    assert "\\u0000" in jobs[1].error


def test_a_result_the_database_refuses_fails_only_its_own_job(dsn, queue, monkeypatch):
    # JSON text that Python accepts and jsonb refuses (numeric overflow), standing
    # for any result the database turns down once it is sent in a batch.
    original = plain.encode_result  # the handler below is plain: plain.py encodes its result

    def encode(value: Any) -> Jsonb | None:
        if value == "overflow":
            return Jsonb(None, dumps=lambda _: '{"n": 1e1000000}')
        return original(value)

    monkeypatch.setattr(plain, "encode_result", encode)
    worker = Worker(concurrency=4, **FAST)
    gate = threading.Barrier(3, timeout=10)

    @worker.handler("big")
    def big(payload, job):
        gate.wait()
        return payload

    ids = [queue.enqueue("big", p, max_attempts=1) for p in ("fine", "overflow", "also fine")]
    with running(worker, dsn):
        jobs = [queue.wait(j, timeout=15) for j in ids]
    assert [j.status for j in jobs] == ["completed", "dead", "completed"]
    assert [jobs[0].result, jobs[2].result] == ["fine", "also fine"]
    assert jobs[1].error is not None
    assert jobs[1].error.startswith("the database refused the handler's result: ")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_progress_is_reported_while_the_handler_runs(dsn, queue, kind):
    worker = Worker(**FAST)
    release = threading.Event()

    if kind == "sync":

        @worker.handler("export")
        def export(payload, job):
            job.progress(40, "reading rows")
            assert release.wait(10)
            job.progress(150, "done")  # clamped to 100 by SQL
            return None

    else:

        @worker.handler("export")
        async def export_async(payload, job):
            job.progress(40, "reading rows")
            while not release.is_set():
                await asyncio.sleep(0.01)
            job.progress(150, "done")
            return None

    job_id = queue.enqueue("export", {})
    with running(worker, dsn):
        during = wait_until(
            lambda: (j := queue.get_job(job_id)).progress == 40 and j,
            what="progress 40 while running",
        )
        release.set()
        after = queue.wait(job_id, timeout=15)
    assert during.status == "running"
    assert during.progress_message == "reading rows"
    assert (after.status, after.progress, after.progress_message) == ("completed", 100, "done")
    assert after.result is None


def test_progress_refuses_what_is_not_a_percentage(dsn, queue):
    worker = Worker(**FAST)

    @worker.handler("p")
    def report(payload, job):
        job.progress(payload["pct"])

    job_id = queue.enqueue("p", {"pct": "half"}, max_attempts=1)
    with running(worker, dsn):
        job = queue.wait(job_id, timeout=15)
    assert job.status == "dead"
    assert job.error == "progress pct must be an int 0-100, got 'half'"


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_concurrency_is_never_exceeded(dsn, queue, kind):
    worker = Worker(concurrency=3, batch_size=10, **FAST)
    lock = threading.Lock()
    now = 0
    peak = 0

    def enter() -> None:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)

    def leave() -> None:
        nonlocal now
        with lock:
            now -= 1

    if kind == "sync":

        @worker.handler("busy")
        def busy(payload, job):
            enter()
            time.sleep(0.03)
            leave()

    else:

        @worker.handler("busy")
        async def busy_async(payload, job):
            enter()
            await asyncio.sleep(0.03)
            leave()

    ids = queue.enqueue_many("busy", [{}] * 24)
    with running(worker, dsn):
        jobs = [queue.wait(j, timeout=20) for j in ids]
    assert all(j.status == "completed" for j in jobs)
    assert peak == 3  # reached, never exceeded


def test_only_the_queues_it_works_are_claimed(dsn, queue):
    worker = Worker(queues=["a"], **FAST)
    ran: list[str] = []

    @worker.handler("a")
    def a(payload, job):
        ran.append("a")

    @worker.handler("b")
    def b(payload, job):
        ran.append("b")

    # Older jobs on other queues first: a claim that looked at them would take them first.
    other = [queue.enqueue("b", {}), queue.enqueue("c", {})]
    mine = queue.enqueue("a", {})
    with running(worker, dsn):
        assert queue.wait(mine, timeout=15).status == "completed"
        time.sleep(0.2)  # a few more claims
    assert ran == ["a"]
    assert [queue.get_job(j).status for j in other] == ["pending", "pending"]


def test_a_job_enqueued_to_an_idle_worker_starts_at_once(dsn, queue):
    worker = Worker(poll_interval=30)
    started: dict[int, float] = {}

    @worker.handler("ping")
    def ping(payload, job):
        started[job.id] = time.monotonic()

    with running(worker, dsn):
        # The first job proves the worker is up; then it idles on LISTEN.
        assert queue.wait(queue.enqueue("ping", {}), timeout=15).status == "completed"
        time.sleep(0.3)
        enqueued = time.monotonic()
        job_id = queue.enqueue("ping", {})
        assert queue.wait(job_id, timeout=10).status == "completed"
    latency = started[job_id] - enqueued
    print(f"enqueue -> handler start: {latency * 1000:.1f} ms")
    assert latency < 2.0  # a poll would take 30 s


def test_a_long_job_keeps_its_lease_by_heartbeat(dsn, queue):
    worker = Worker(lease=1.0, **FAST)  # heartbeat every 1/3 s

    @worker.handler("long")
    def long(payload, job):
        time.sleep(2.5)
        return job.attempt

    job_id = queue.enqueue("long", {})
    with running(worker, dsn):
        job = queue.wait(job_id, timeout=20)
    assert (job.status, job.attempt, job.result) == ("completed", 1, 1)


def test_a_job_cancelled_while_running_is_logged_as_lost(dsn, queue, caplog):
    caplog.set_level(logging.WARNING, logger="pyqueue.worker")
    worker = Worker(lease=1.5, **FAST)
    inside = threading.Event()
    release = threading.Event()

    @worker.handler("slow")
    def slow(payload, job):
        if payload.get("block"):
            inside.set()
            assert release.wait(10)
        return "finished"

    job_id = queue.enqueue("slow", {"block": True})
    with running(worker, dsn):
        assert inside.wait(15)
        assert queue.cancel(job_id)
        # The next heartbeat (every 0.5 s) finds the lease gone.
        wait_until(lambda: f"job {job_id} (slow) was lost" in caplog.text, what="lost log")
        release.set()
        after = queue.enqueue("slow", {})
        assert queue.wait(after, timeout=15).status == "completed"
    job = queue.get_job(job_id)
    assert (job.status, job.result) == ("cancelled", None)


def test_stop_lets_running_handlers_finish(dsn, queue):
    worker = Worker(grace_period=10, **FAST)
    inside = threading.Event()

    @worker.handler("slow")
    def slow(payload, job):
        inside.set()
        time.sleep(0.5)
        return "done"

    job_id = queue.enqueue("slow", {})
    with running(worker, dsn):
        assert inside.wait(15)
    job = queue.get_job(job_id)  # run() has returned: the outcome is stored
    assert (job.status, job.result) == ("completed", "done")


def test_a_handler_past_the_grace_period_fails_its_job(dsn, queue):
    worker = Worker(grace_period=0.2, **FAST)
    inside = threading.Event()
    release = threading.Event()

    @worker.handler("stuck")
    def stuck(payload, job):
        inside.set()
        release.wait(10)

    job_id = queue.enqueue("stuck", {})
    try:
        with running(worker, dsn):
            assert inside.wait(15)
        job = queue.get_job(job_id)
    finally:
        release.set()
    assert (job.status, job.attempt) == ("pending", 1)
    assert job.error == "the worker stopped before the handler finished (grace period 0.2 s)"


def test_the_worker_reconnects_after_its_sessions_are_terminated(dsn, db, queue, caplog):
    caplog.set_level(logging.WARNING, logger="pyqueue.worker")
    worker = Worker(**FAST)

    @worker.handler("echo")
    def echo(payload, job):
        return payload

    with running(worker, dsn):
        assert queue.wait(queue.enqueue("echo", 1), timeout=15).status == "completed"
        db.execute(TERMINATE_OTHERS)
        job = queue.wait(queue.enqueue("echo", 2), timeout=20)
        wait_until(lambda: "connected again" in caplog.text, what="the reconnect log")
    assert (job.status, job.result, job.attempt) == ("completed", 2, 1)
    assert "database connection lost" in caplog.text


def test_the_schema_must_be_there_and_serve_this_client(dsn, db):
    worker = Worker()

    @worker.handler("q")
    def handle(payload, job):
        raise AssertionError("never claimed")

    db.execute("CREATE OR REPLACE FUNCTION pyqueue.schema_compatibility(OUT version integer,"
               " OUT oldest_client_version integer) LANGUAGE sql AS 'SELECT 999, 998'")  # fmt: skip
    refusal = "version 999, which serves clients written for schema version 998 or newer"
    written_for = f"this client is written for {SCHEMA_VERSION}: upgrade pyqueue"
    with pytest.raises(SchemaError, match=f"{refusal}; {written_for}"):
        worker.run(dsn, install_signal_handlers=False)
    db.execute("DROP SCHEMA pyqueue CASCADE")
    with pytest.raises(SchemaError, match="not installed here: run `pyqueue migrate`"):
        worker.run(dsn, install_signal_handlers=False)


def test_bad_settings_are_refused_by_name():
    with pytest.raises(InvalidArgument, match="concurrency must be an integer from 1"):
        Worker(concurrency=0)
    with pytest.raises(InvalidArgument, match="batch_size must be an integer"):
        Worker(batch_size=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="lease must be a number of seconds"):
        Worker(lease=-1)
    with pytest.raises(InvalidArgument, match=r"heartbeat_interval \(30 s\) must be shorter"):
        Worker(lease=30, heartbeat_interval=30)
    with pytest.raises(InvalidArgument, match="not the string 'emails'"):
        Worker(queues="emails")
    worker = Worker()
    with pytest.raises(InvalidArgument, match="poll_interval must be a number of seconds"):
        worker.configure(poll_interval=0)
    with pytest.raises(InvalidArgument, match="no handlers registered"):
        worker.run("dbname=unused")

    @worker.handler("emails")
    def send(payload, job):
        return None

    with pytest.raises(InvalidArgument, match="queue 'emails' already has a handler"):
        worker.handler("emails")(send)
    worker.configure(queues=["emails", "sms"])
    with pytest.raises(InvalidArgument, match="no handler for queue\\(s\\) sms"):
        worker.run("dbname=unused")
    with pytest.raises(InvalidArgument, match="no database"):
        Worker().run()


def test_results_of_handlers_that_finished_while_the_database_was_away_are_stored(
    dsn, db, queue, caplog
):
    caplog.set_level(logging.DEBUG, logger="pyqueue.worker")
    worker = Worker(**FAST)
    inside = threading.Event()
    release = threading.Event()

    @worker.handler("report")
    def report(payload, job):
        inside.set()
        assert release.wait(10)
        return {"rows": 7}

    name = db.info.dbname
    job_id = queue.enqueue("report", {})
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:

        def allow_connections(allow: bool) -> None:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allow).lower()}')

        try:
            with running(worker, dsn):
                assert inside.wait(15)
                # The database goes away for the worker: no new connection, old ones cut.
                allow_connections(False)
                db.execute(TERMINATE_OTHERS)
                release.set()  # the handler finishes while its result cannot be stored
                wait_until(lambda: "cannot connect" in caplog.text, what="failed reconnects")
                time.sleep(0.5)
                allow_connections(True)
                wait_until(lambda: status(db, job_id) == "completed", what="the stored result")
        finally:
            allow_connections(True)
    job = queue.get_job(job_id)
    assert (job.result, job.attempt) == ({"rows": 7}, 1)
    assert "connected again after" in caplog.text


def test_jobs_claimed_when_the_stop_comes_are_handed_back_unstarted(dsn, queue, monkeypatch):
    worker = Worker(concurrency=4, **FAST)
    original = Claimer.claim
    claimed = threading.Event()

    async def claim_then_stop(self: Claimer, size: int, ahead: int = 0) -> Any:
        rows = await original(self, size, ahead)
        if rows.rowcount:
            worker.stop()  # as if SIGTERM arrived while the claim was on the wire
            claimed.set()
            await asyncio.sleep(0.1)
        return rows

    monkeypatch.setattr(Claimer, "claim", claim_then_stop)
    ran: list[int] = []

    @worker.handler("q")
    def handle(payload, job):
        ran.append(job.id)

    ids = queue.enqueue_many("q", [{}] * 3)
    with running(worker, dsn) as thread:
        assert claimed.wait(15)
        wait_until(lambda: not thread.is_alive(), what="the worker to stop by itself")
    jobs = [queue.get_job(j) for j in ids]
    assert ran == []
    assert [(j.status, j.attempt) for j in jobs] == [("pending", 0)] * 3


def test_a_claim_sent_ahead_is_handed_back_when_the_stop_comes(dsn, queue, monkeypatch):
    # Batches of 2 with 4 slots: the second claim goes out before the first
    # batch starts. The stop comes as that batch starts, so the second batch
    # arrives after it: handed back unstarted, the first batch run to the end.
    worker = Worker(concurrency=4, batch_size=2, **FAST)
    original = Executor.start
    claims: list[int] = []
    original_claim = Claimer.claim

    async def counted_claim(self: Claimer, size: int, ahead: int = 0) -> Any:
        claims.append(size)
        return await original_claim(self, size, ahead)

    def start_then_stop(self: Executor, job: Any) -> None:
        self.state.stop()  # at once, not at the loop's next turn as worker.stop() would
        original(self, job)

    monkeypatch.setattr(Claimer, "claim", counted_claim)
    monkeypatch.setattr(Executor, "start", start_then_stop)
    ran: list[int] = []

    @worker.handler("q")
    def handle(payload, job):
        ran.append(job.id)

    ids = queue.enqueue_many("q", [{}] * 4)
    with running(worker, dsn) as thread:
        wait_until(lambda: len(claims) == 2, what="the claim sent ahead")
        wait_until(lambda: not thread.is_alive(), what="the worker to stop by itself")
    jobs = [queue.get_job(j) for j in ids]
    assert claims == [2, 2]
    assert sorted(ran) == ids[:2]
    assert [(j.status, j.attempt) for j in jobs] == [("completed", 1)] * 2 + [("pending", 0)] * 2


def test_a_stop_during_an_outage_does_not_wait_for_the_database(dsn, db, queue, caplog):
    caplog.set_level(logging.DEBUG, logger="pyqueue.worker")
    worker = Worker(grace_period=1, **FAST)
    inside = threading.Event()
    release = threading.Event()

    @worker.handler("q")
    def handle(payload, job):
        inside.set()
        assert release.wait(10)
        return "done while the database was away"

    name = db.info.dbname
    job_id = queue.enqueue("q", {})
    with psycopg.connect(make_conninfo(dsn, dbname="postgres"), autocommit=True) as admin:
        try:
            with running(worker, dsn):
                assert inside.wait(15)
                admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                db.execute(TERMINATE_OTHERS)
                release.set()  # its result now waits for the database, retried with backoff
                wait_until(lambda: "cannot connect" in caplog.text, what="failed reconnects")
                stopped = time.monotonic()
            took = time.monotonic() - stopped
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert took < 10, f"stop took {took:.1f} s"
    assert f"could not store the outcomes of jobs [{job_id}]" in caplog.text
    assert status(db, job_id) == "running"  # its lease expires, and it runs again
