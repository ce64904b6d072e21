"""The worker the chaos processes run: `pyqueue worker tests.chaos.chaos_worker:worker`.

Its handler writes a 'start' and an 'end' row into the table chaos_ledger of
the test database for every run, on its own connection, so the chaos tests
count real executions rather than trust job states; between the two it does
its "work": a sleep, then one row in chaos_effects, written idempotently. Environment:

    PYQUEUE_CHAOS_DSN        the database of the ledger (the queue's own)
    PYQUEUE_CHAOS_LEASE      the lease in seconds (the CLI has no option for it)
    PYQUEUE_CHAOS_HEARTBEAT  seconds between heartbeats (default: lease / 3)

Payload: {"seconds": how long the run takes, "fail": true to raise every time}.

Two more queues for the exactly-once-effects scenario, both writing one row per
run into chaos_runs, with no key to stop a second row: "chaos-plain" writes it
on its own connection (at-least-once: a re-run writes again), "chaos-tx" in
the job's transaction (job.transaction()), which commits only with the job's
completion by the run that still holds it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import psycopg

from pyqueue import JobContext, Worker

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

QUEUE = "chaos"
LEDGER_DDL = """
CREATE TABLE chaos_ledger (
    job_id  bigint  NOT NULL,
    attempt integer NOT NULL,
    pid     integer NOT NULL,
    event   text    NOT NULL CHECK (event IN ('start', 'end')),
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- A write retried after its connection broke must not count twice.
    UNIQUE (job_id, attempt, pid, event)
)
"""
# The handler's effect, written the idempotent way (the README's Guarantees): keyed
# by the job, so that a second run of the same job changes nothing.
EFFECTS_DDL = """
CREATE TABLE chaos_effects (
    job_id  bigint  PRIMARY KEY,
    attempt integer NOT NULL,
    pid     integer NOT NULL
)
"""
PLAIN_QUEUE = "chaos-plain"
TX_QUEUE = "chaos-tx"
RUNS_DDL = """
CREATE TABLE chaos_runs (
    job_id  bigint  NOT NULL,
    queue   text    NOT NULL,
    attempt integer NOT NULL,
    pid     integer NOT NULL
)
"""
# How long a ledger write keeps trying through a restart or a terminate storm.
WRITE_PATIENCE_SECONDS = 60.0

_heartbeat = os.environ.get("PYQUEUE_CHAOS_HEARTBEAT")
worker = Worker(
    lease=float(os.environ.get("PYQUEUE_CHAOS_LEASE", "30")),
    heartbeat_interval=float(_heartbeat) if _heartbeat else None,
)
_local = threading.local()


def write(statement: str, params: list[Any]) -> None:
    """Run one idempotent statement on this thread's connection, however often it breaks."""
    deadline = time.monotonic() + WRITE_PATIENCE_SECONDS
    while True:
        try:
            conn = getattr(_local, "conn", None)
            if conn is None or conn.closed:
                conn = _local.conn = psycopg.connect(
                    os.environ["PYQUEUE_CHAOS_DSN"], autocommit=True, connect_timeout=5
                )
            conn.execute(statement, params)
            return
        except psycopg.OperationalError:
            _local.conn = None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def record(job: JobContext, event: str) -> None:
    """One ledger row for this run: 'start' or 'end'."""
    write(
        "INSERT INTO chaos_ledger (job_id, attempt, pid, event) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        [job.id, job.attempt, os.getpid(), event],
    )


@worker.handler(QUEUE)
def run(payload: dict[str, Any], job: JobContext) -> dict[str, int]:
    record(job, "start")
    if payload.get("fail"):
        raise RuntimeError(f"job {job.id} is designed to fail")
    time.sleep(float(payload.get("seconds", 0)))
    write(
        "INSERT INTO chaos_effects (job_id, attempt, pid) VALUES (%s, %s, %s)"
        " ON CONFLICT (job_id) DO NOTHING",
        [job.id, job.attempt, os.getpid()],
    )
    record(job, "end")
    return {"pid": os.getpid(), "attempt": job.attempt}


@worker.handler(PLAIN_QUEUE)
def run_plain(payload: dict[str, Any], job: JobContext) -> None:
    """The effect first, then the rest of the work: a kill after the write re-runs it."""
    record(job, "start")
    write(
        "INSERT INTO chaos_runs (job_id, queue, attempt, pid) VALUES (%s, %s, %s, %s)",
        [job.id, job.queue, job.attempt, os.getpid()],
    )
    time.sleep(float(payload.get("seconds", 0)))
    record(job, "end")


@worker.handler(TX_QUEUE)
def run_in_transaction(payload: dict[str, Any], job: JobContext) -> None:
    """The same work with its effect in the job's transaction."""
    record(job, "start")
    with job.transaction() as conn:
        conn.execute(
            "INSERT INTO chaos_runs (job_id, queue, attempt, pid) VALUES (%s, %s, %s, %s)",
            [job.id, job.queue, job.attempt, os.getpid()],
        )
        time.sleep(float(payload.get("seconds", 0)))
    record(job, "end")
