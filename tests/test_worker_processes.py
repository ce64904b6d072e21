"""Real worker processes, started as users start them: `pyqueue worker MODULE:OBJECT`.

The handler (tests/workers_for_tests.py) writes a 'start' and an 'end' row into
the table `ledger` for every run, so these tests count real executions, not
just job states. Signals, kill -9 and pg_terminate_backend are the real thing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.workers_for_tests import LEDGER_DDL

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TERMINATE_OTHERS = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


class WorkerProcess:
    """`pyqueue --database-url DSN worker tests.workers_for_tests:worker ARGS`."""

    def __init__(self, dsn: str, log: Path, *args: str, lease: float = 30.0) -> None:
        self.log = log
        env = {**os.environ, "PYQUEUE_TEST_DSN": dsn, "PYQUEUE_TEST_LEASE": str(lease)}
        command = [sys.executable, "-m", "pyqueue.cli", "--database-url", dsn, "worker",
                   "tests.workers_for_tests:worker", *args]  # fmt: skip
        with log.open("w") as out:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker still running after {timeout} s\n{self.output()}"
            ) from None

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def workers(dsn: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes; any still running at the end are killed."""
    started: list[WorkerProcess] = []

    def start(*args: str, lease: float = 30.0) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started) + 1}.log"
        started.append(WorkerProcess(dsn, log, *args, lease=lease))
        return started[-1]

    yield start
    for worker in started:
        worker.kill()


@pytest.fixture
def ledger(db: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    db.execute(LEDGER_DDL)
    return db


def scalar(db: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = db.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def wait_for(db, query: str, expected: Callable[[Any], bool], timeout: float, worker=None):
    """Poll `query` until `expected(value)`; fail with the worker's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = scalar(db, query)
        if expected(value):
            return value
        if worker is not None and worker.process.poll() is not None:
            raise AssertionError(f"the worker exited early:\n{worker.output()}")
        time.sleep(0.1)
    log = worker.output() if worker is not None else ""
    raise AssertionError(f"timed out: {query} is {value}\n{log}")


def enqueue_many(db, count: int, payload: str) -> list[int]:
    return [
        r[0]
        for r in db.execute(
            "SELECT * FROM pyqueue.enqueue_batch('ledger', array_fill(%s::jsonb, ARRAY[%s]))",
            [payload, count],
        ).fetchall()
    ]


def runs_per_job(db) -> dict[int, tuple[int, int]]:
    """job id -> (start rows, end rows) in the ledger."""
    rows = db.execute(
        "SELECT job_id, count(*) FILTER (WHERE event = 'start'),"
        " count(*) FILTER (WHERE event = 'end') FROM ledger GROUP BY job_id"
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


COMPLETED = "SELECT count(*) FROM pyqueue.jobs WHERE status = 'completed'"


def test_a_worker_drains_a_thousand_jobs_running_each_once(ledger, workers):
    ids = enqueue_many(ledger, 1000, '{"sleep": 0}')
    began = time.monotonic()
    worker = workers("--concurrency", "8", "--batch-size", "8")
    wait_for(ledger, COMPLETED, lambda n: n == 1000, timeout=60, worker=worker)
    print(f"1000 jobs drained in {time.monotonic() - began:.1f} s (process start included)")
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0

    assert runs_per_job(ledger) == {job_id: (1, 1) for job_id in ids}
    assert scalar(ledger, "SELECT count(*) FROM pyqueue.jobs WHERE attempt <> 1") == 0
    assert (
        scalar(ledger, "SELECT count(*) FROM pyqueue.jobs WHERE result ->> 'attempt' = '1'") == 1000
    )


def test_sigterm_lets_running_jobs_finish_and_exits_zero(ledger, workers):
    ids = enqueue_many(ledger, 12, '{"sleep": 0.5}')
    worker = workers("--concurrency", "4")
    wait_for(ledger, "SELECT count(*) FROM ledger", lambda n: n >= 4, timeout=30, worker=worker)
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(25) == 0, worker.output()  # 25 s: the default grace period
    print(f"exited {time.monotonic() - signalled:.2f} s after SIGTERM")

    runs = runs_per_job(ledger)
    states = dict(ledger.execute("SELECT id, status FROM pyqueue.jobs").fetchall())
    assert set(states) == set(ids)
    assert "running" not in states.values()
    for job_id, state in states.items():
        if job_id in runs:  # started: it finished, and its result was stored
            assert (state, runs[job_id]) == ("completed", (1, 1))
        else:
            assert state == "pending"
    assert "pending" in states.values(), "the worker finished everything before the signal"
    assert scalar(ledger, "SELECT count(*) FROM pyqueue.jobs WHERE status = 'pending'"
                          " AND attempt <> 0") == 0  # fmt: skip
    assert "stopping: no new jobs" in worker.output()


def test_a_second_sigterm_stops_at_once(ledger, workers):
    [job_id] = enqueue_many(ledger, 1, '{"sleep_first": 60}')
    worker = workers(lease=30)
    wait_for(ledger, "SELECT count(*) FROM ledger", lambda n: n == 1, timeout=30, worker=worker)
    worker.signal(signal.SIGTERM)
    time.sleep(0.3)
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    print(f"exited {time.monotonic() - signalled:.2f} s after the second SIGTERM")
    # The handler never finished; its lease will expire and recovery re-runs it.
    assert scalar(ledger, "SELECT status FROM pyqueue.jobs WHERE id = %s", [job_id]) == "running"
    assert "stopping at once" in worker.output()


def test_a_killed_workers_job_is_finished_by_another_after_its_lease(ledger, workers):
    [slow] = enqueue_many(ledger, 1, '{"sleep_first": 60}')
    quick = enqueue_many(ledger, 20, '{"sleep": 0.05}')
    first = workers("--concurrency", "4", lease=2)
    wait_for(ledger, f"SELECT count(*) FROM ledger WHERE job_id = {slow}", lambda n: n == 1,
             timeout=30, worker=first)  # fmt: skip
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    killed = time.monotonic()

    second = workers("--concurrency", "4", "--poll-interval", "0.2", lease=2)
    wait_for(ledger, COMPLETED, lambda n: n == 21, timeout=30, worker=second)
    print(f"all done {time.monotonic() - killed:.1f} s after kill -9 (lease 2 s)")
    second.signal(signal.SIGTERM)
    assert second.wait(20) == 0

    # At least once: a job the killed worker held runs again, even if its handler had
    # finished but its result was not stored yet. Every job's final attempt ran once
    # and completed it; only jobs the killed worker held needed a second attempt.
    final = dict(ledger.execute("SELECT id, attempt FROM pyqueue.jobs WHERE status = 'completed'"))
    assert set(final) == {slow, *quick}
    ends = ledger.execute(
        "SELECT job_id, attempt, count(*) FROM ledger WHERE event = 'end' GROUP BY 1, 2"
    ).fetchall()
    assert {(job_id, attempt) for job_id, attempt, _ in ends if attempt == final[job_id]} == set(
        final.items()
    )
    assert all(n == 1 for _, _, n in ends)
    earlier_runs = ledger.execute(
        "SELECT DISTINCT l.pid FROM ledger l JOIN pyqueue.jobs j ON j.id = l.job_id"
        " WHERE l.attempt < j.attempt"
    ).fetchall()
    assert earlier_runs == [(first.process.pid,)]
    # The slow job was cut short by the kill and ran whole on the second worker.
    assert final[slow] == 2
    assert ledger.execute(
        "SELECT attempt, pid, event FROM ledger WHERE job_id = %s ORDER BY at", [slow]
    ).fetchall() == [
        (1, first.process.pid, "start"),
        (2, second.process.pid, "start"),
        (2, second.process.pid, "end"),
    ]
    result = scalar(ledger, "SELECT result FROM pyqueue.jobs WHERE id = %s", [slow])
    assert result == {"attempt": 2}


def test_a_worker_whose_sessions_are_terminated_reconnects_and_loses_nothing(ledger, workers):
    ids = enqueue_many(ledger, 300, '{"sleep": 0.01}')
    worker = workers("--concurrency", "4", "--batch-size", "4")
    ends = "SELECT count(*) FROM ledger WHERE event = 'end'"
    for target in (30, 150):
        wait_for(ledger, ends, lambda n, t=target: n >= t, timeout=30, worker=worker)
        assert scalar(ledger, TERMINATE_OTHERS) >= 2
    wait_for(ledger, COMPLETED, lambda n: n == 300, timeout=60, worker=worker)
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0

    # Every job completed on its first attempt (no lease was lost), its handler
    # finished once, and its result was stored once.
    assert runs_per_job(ledger) == {job_id: (1, 1) for job_id in ids}
    assert scalar(ledger, "SELECT count(*) FROM pyqueue.jobs WHERE attempt <> 1") == 0
    output = worker.output()
    assert "database connection lost" in output
    assert "connected again" in output


def test_a_job_enqueued_to_an_idle_worker_process_starts_at_once(ledger, workers):
    worker = workers("--poll-interval", "30")
    enqueue_many(ledger, 1, "{}")  # warm-up: proves the worker is up
    wait_for(ledger, COMPLETED, lambda n: n == 1, timeout=30, worker=worker)
    time.sleep(0.5)  # idle on LISTEN now
    [job_id] = enqueue_many(ledger, 1, "{}")
    latency = wait_for(
        ledger,
        f"SELECT (SELECT extract(epoch FROM l.at - j.created_at) FROM ledger l"
        f" JOIN pyqueue.jobs j ON j.id = l.job_id WHERE l.job_id = {job_id} AND l.event = 'start')",
        lambda value: value is not None,
        timeout=10,
        worker=worker,
    )
    print(f"enqueue -> handler start in a worker process: {float(latency) * 1000:.1f} ms")
    assert float(latency) < 2.0  # the poll would take 30 s
    worker.signal(signal.SIGTERM)
    assert worker.wait(20) == 0


@pytest.mark.parametrize("prefetch", [0, 4])
def test_a_worker_never_holds_more_running_jobs_than_its_bound(ledger, workers, prefetch):
    # Storing a completion is made slow (a loaded database), the handlers are
    # instant: finished jobs wait for their outcome to be stored. Past
    # concurrency + prefetch of them, the worker must stop claiming, or it
    # claims on and holds ever more (worker/state.py states the bound).
    ledger.execute(SLOW_COMPLETION)
    ledger.execute("SELECT pyqueue.enqueue_batch('fast', array_fill('{}'::jsonb, ARRAY[1500]))")
    concurrency = 8
    options = ["--concurrency", str(concurrency), "--batch-size", "10", "--prefetch", str(prefetch)]
    fleet = [workers(*options) for _ in range(2)]
    most: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while scalar(ledger, "SELECT count(*) FROM pyqueue.jobs WHERE status <> 'completed'"):
        for name, running in ledger.execute(
            "SELECT worker, count(*) FROM pyqueue.jobs WHERE status = 'running' GROUP BY worker"
        ):
            most[name] = max(most.get(name, 0), running)
        assert time.monotonic() < deadline, f"not drained in 60 s\n{fleet[0].output()}"
        time.sleep(0.01)
    for worker in fleet:
        worker.signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    print(f"most jobs running per worker: {most}")
    assert len(most) == 2
    assert max(most.values()) <= 2 * (concurrency + prefetch)


# Every completion waits 2 ms per job, as on a database busy with other work.
SLOW_COMPLETION = """
CREATE FUNCTION slow_completion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.002);
    RETURN NEW;
END;
$$;
CREATE TRIGGER slow_completion BEFORE UPDATE ON pyqueue.jobs
FOR EACH ROW WHEN (NEW.status = 'completed') EXECUTE FUNCTION slow_completion();
"""
