"""Flow control under concurrency: six real worker processes with mixed batch
sizes and two SQL claimers share three queues, one capped at 3 running, one
rate-limited to 5 starts a second, one paused until the end.

A trigger on pyqueue.jobs writes, at every start, how many jobs of the queue
are running as the claiming transaction sees them. Claims of a limited queue
take the queue's ledger row in turn and each sees every earlier claim, so the
trigger's count at each start is exactly the number running then; a thread
sampling committed counts all along checks the same from outside.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from tests.test_worker_processes import WorkerProcess, ledger, wait_for, workers  # noqa: F401

pytestmark = pytest.mark.slow

Conn = psycopg.Connection[Any]

SAMPLES_DDL = """
CREATE TABLE starts (queue text, running bigint, at timestamptz);
CREATE FUNCTION record_start() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.starts VALUES (
        NEW.queue,
        (SELECT count(*) FROM pyqueue.jobs WHERE queue = NEW.queue AND status = 'running'),
        NEW.started_at);
    RETURN NULL;
END;
$$;
CREATE TRIGGER record_start AFTER UPDATE OF status ON pyqueue.jobs
FOR EACH ROW WHEN (NEW.status = 'running' AND OLD.status <> 'running')
EXECUTE FUNCTION record_start();
"""

QUEUES = ["capped", "rated", "held"]
CAP, RATE, PERIOD = 3, 5, 1.0


class Sampler(threading.Thread):
    """Reads the committed running count per queue until stopped; keeps the most."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.most, self.stop = dsn, dict.fromkeys(QUEUES, 0), threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                for queue, running in conn.execute(
                    "SELECT queue, count(*) FROM pyqueue.jobs WHERE status = 'running'"
                    " GROUP BY queue"
                ):
                    self.most[queue] = max(self.most.get(queue, 0), running)
                time.sleep(0.005)


class SqlClaimer(threading.Thread):
    """Claims as a worker in another language would: claim_batch, then complete_batch."""

    def __init__(self, dsn: str, name: str, batch_size: int) -> None:
        super().__init__(daemon=True)
        self.dsn, self.name, self.batch_size = dsn, name, batch_size
        self.stop, self.claimed, self.error = threading.Event(), 0, None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self.stop.is_set():
                    got = conn.execute(
                        "SELECT id, lease_token FROM pyqueue.claim_batch(%s, %s, %s)",
                        [QUEUES, self.name, self.batch_size],
                    ).fetchall()
                    self.claimed += len(got)
                    time.sleep(0.03)
                    if got:
                        conn.execute(
                            "SELECT pyqueue.complete_batch(%s::bigint[], %s::uuid[])",
                            [[g[0] for g in got], [g[1] for g in got]],
                        )
        except Exception as error:  # reported by the test
            self.error = error


def fill(db: Conn, queue: str, count: int, payload: str) -> None:
    db.execute(
        "SELECT pyqueue.enqueue_batch(%s, array_fill(%s::jsonb, ARRAY[%s]))",
        [queue, payload, count],
    )


def done(db: Conn, queue: str) -> int:
    found = db.execute(
        "SELECT count(*) FROM pyqueue.jobs WHERE queue = %s AND status = 'completed'", [queue]
    ).fetchone()
    assert found is not None
    return int(found[0])


def test_limits_hold_across_a_fleet(
    dsn: str,
    ledger: Conn,  # noqa: F811
    workers: Callable[..., WorkerProcess],  # noqa: F811
) -> None:
    db = ledger
    db.execute(SAMPLES_DDL)
    db.execute("SELECT pyqueue.configure_queue('capped', concurrency => %s)", [CAP])
    db.execute(
        "SELECT pyqueue.configure_queue('rated', rate_limit => %s, rate_period => %s)",
        [RATE, f"{PERIOD} seconds"],
    )
    db.execute("SELECT pyqueue.pause_queue('held')")
    fleet = [
        workers(
            "--batch-size",
            str(size),
            "--concurrency",
            "4",
            "--poll-interval",
            "0.5",
            "--queues",
            ",".join(QUEUES),
            "--no-maintenance",
        )
        for size in (1, 2, 3, 5, 8, 10)
    ]
    deadline = time.monotonic() + 60
    while not all("started: queues" in w.output() for w in fleet):
        assert time.monotonic() < deadline, "\n".join(w.output() for w in fleet)
        time.sleep(0.1)
    sampler = Sampler(dsn)
    sampler.start()
    fill(db, "capped", 60, '{"sleep": 0.05}')
    fill(db, "rated", 20, "{}")
    fill(db, "held", 10, "{}")
    claimers = [SqlClaimer(dsn, "sql-1", 1), SqlClaimer(dsn, "sql-2", 4)]
    for claimer in claimers:
        claimer.start()

    # Pause the capped queue mid-run: nothing of it starts after the pause
    # committed, though six workers and two claimers keep asking.
    wait_for(
        db, "SELECT count(*) FROM starts WHERE queue = 'capped'", lambda n: n >= 15, 60, fleet[0]
    )
    db.execute("SELECT pyqueue.pause_queue('capped')")
    paused_after = db.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    time.sleep(1.0)
    late = db.execute(
        "SELECT count(*) FROM starts WHERE queue = 'capped' AND at > %s", [paused_after]
    ).fetchone()
    assert late == (0,)
    db.execute("SELECT pyqueue.resume_queue('capped')")

    wait_for(
        db,
        "SELECT count(*) FROM pyqueue.jobs WHERE queue IN ('capped', 'rated')"
        " AND status <> 'completed'",
        lambda n: n == 0,
        90,
        fleet[0],
    )
    assert db.execute("SELECT count(*) FROM starts WHERE queue = 'held'").fetchone() == (0,)
    resumed_before = db.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    db.execute("SELECT pyqueue.resume_queue('held')")
    wait_for(
        db,
        "SELECT count(*) FROM pyqueue.jobs WHERE queue = 'held' AND status <> 'completed'",
        lambda n: n == 0,
        30,
        fleet[0],
    )

    for claimer in claimers:
        claimer.stop.set()
        claimer.join(10)
        assert claimer.error is None, claimer.error
    sampler.stop.set()
    sampler.join(10)

    # Concurrency: never above the cap, and the cap was reached (the test can fail).
    most = db.execute("SELECT max(running) FROM starts WHERE queue = 'capped'").fetchone()
    assert most == (CAP,)
    assert 0 < sampler.most["capped"] <= CAP
    # Rate: at most RATE starts in any window of PERIOD, counted from each start.
    crowded = db.execute(
        "SELECT max((SELECT count(*) FROM starts b WHERE b.queue = 'rated'"
        "  AND b.at >= a.at AND b.at < a.at + %s * interval '1 second'))"
        " FROM starts a WHERE a.queue = 'rated'",
        [PERIOD],
    ).fetchone()
    assert crowded == (RATE,)
    spread = db.execute(
        "SELECT extract(epoch FROM max(at) - min(at)) FROM starts WHERE queue = 'rated'"
    ).fetchone()
    assert spread is not None and spread[0] >= (20 / RATE - 1) * PERIOD
    # Pause: the held queue started nothing before its resume.
    early = db.execute(
        "SELECT count(*) FROM starts WHERE queue = 'held' AND at < %s", [resumed_before]
    ).fetchone()
    assert early == (0,)
    # Every job ran once, by a worker process or a SQL claimer.
    assert db.execute("SELECT count(*) FROM starts").fetchone() == (90,)
    assert sum(c.claimed for c in claimers) > 0
    assert db.execute("SELECT count(DISTINCT pid) FROM ledger").fetchone()[0] >= 3  # type: ignore[index]
