"""A worker for the process tests, run as `pyqueue worker tests.workers_for_tests:worker`.

Its handler writes each run into the table `ledger` of the test database
(PYQUEUE_TEST_DSN), so that a test can count how often every job really ran.
PYQUEUE_TEST_LEASE sets the lease in seconds (the CLI has no option for it).
PYQUEUE_TEST_CLIENT_SCHEMA="WRITTEN_FOR:OLDEST" makes this process a client of
another release for the compatibility rule: one written for schema version
WRITTEN_FOR that can use schemas from OLDEST on (tomorrow's worker, in the
rolling-deploy test).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import psycopg

from pyqueue import JobContext, Worker, schema

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

if "PYQUEUE_TEST_CLIENT_SCHEMA" in os.environ:
    written_for, oldest = os.environ["PYQUEUE_TEST_CLIENT_SCHEMA"].split(":")
    schema.SCHEMA_VERSION, schema.OLDEST_SCHEMA = int(written_for), int(oldest)

worker = Worker(lease=float(os.environ.get("PYQUEUE_TEST_LEASE", "30")))

LEDGER_DDL = """
CREATE TABLE ledger (
    job_id  bigint  NOT NULL,
    attempt integer NOT NULL,
    pid     integer NOT NULL,
    event   text    NOT NULL,  -- 'start' or 'end' of a handler run
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

_local = threading.local()


def _write(job: JobContext, event: str) -> None:
    """One ledger row; survives the test terminating this connection.

    After a connection error the row may or may not have been written, so the
    retry inserts it only if it is missing.
    """
    row = [job.id, job.attempt, os.getpid(), event]
    for retry in range(20):
        conn = getattr(_local, "conn", None)
        try:
            if conn is None or conn.closed:
                conn = _local.conn = psycopg.connect(
                    os.environ["PYQUEUE_TEST_DSN"], autocommit=True
                )
            if retry == 0:
                conn.execute(
                    "INSERT INTO ledger (job_id, attempt, pid, event) VALUES (%s, %s, %s, %s)", row
                )
            else:
                conn.execute(
                    "INSERT INTO ledger (job_id, attempt, pid, event) SELECT %s, %s, %s, %s"
                    " WHERE NOT EXISTS (SELECT FROM ledger WHERE job_id = %s AND attempt = %s"
                    " AND pid = %s AND event = %s)",
                    row + row,
                )
            return
        except psycopg.OperationalError:
            _local.conn = None
            time.sleep(0.05 * (retry + 1))
    raise RuntimeError(f"could not write the ledger row for job {job.id}")


@worker.handler("ledger")
def ledger(payload: dict[str, Any], job: JobContext) -> dict[str, int]:
    """Payload: {"sleep": seconds, "sleep_first": seconds on attempt 1 only}."""
    _write(job, "start")
    delay = payload.get("sleep", 0)
    if job.attempt == 1:
        delay += payload.get("sleep_first", 0)
    if delay:
        time.sleep(delay)
    _write(job, "end")
    return {"attempt": job.attempt}


@worker.handler("fast")
def fast(payload: Any, job: JobContext) -> None:
    """Does nothing: the handlers finish faster than the worker can store outcomes."""


# The flow-control fleet test (tests/test_flow_fleet.py) runs the same handler
# on queues that carry flow limits.
for _flow_queue in ("capped", "rated", "held"):
    worker.handler(_flow_queue)(ledger)
