"""The raw-SQL baseline: the least work a durable queue can do.

A plain table with one partial index over pending jobs, in the claim's order.
Enqueue is an INSERT (plus a NOTIFY where a worker waits for it); a claim is one
UPDATE over a FOR UPDATE SKIP LOCKED pick that commits the lease, so a claimed
job survives the worker's crash as pyqueue's does; finishing is one set-based
DELETE of the batch. Payloads go as JSON text cast to jsonb, arrays in binary,
as pyqueue's client sends them. No validation, no defaults lookup, no fencing
token, no history: every figure pyqueue shows is compared with this, on the
same server, in the same run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS bench_raw;
CREATE TABLE IF NOT EXISTS bench_raw.jobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue        text        NOT NULL,
    status       text        NOT NULL DEFAULT 'pending',
    priority     integer     NOT NULL DEFAULT 0,
    run_at       timestamptz NOT NULL DEFAULT now(),
    attempt      integer     NOT NULL DEFAULT 0,
    locked_until timestamptz,
    payload      jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_claim_idx ON bench_raw.jobs (queue, priority DESC, run_at, id)
    WHERE status = 'pending';
"""

CHANNEL = "bench_raw_jobs"

INSERT_ONE = "INSERT INTO bench_raw.jobs (queue, payload) VALUES (%s, %s::jsonb) RETURNING id"

INSERT_ONE_NOTIFY = f"""
WITH job AS (
    INSERT INTO bench_raw.jobs (queue, payload) VALUES (%s, %s::jsonb) RETURNING id, queue
)
SELECT id, pg_notify('{CHANNEL}', queue) FROM job
"""

INSERT_MANY = """
INSERT INTO bench_raw.jobs (queue, payload)
SELECT %s, p FROM unnest(%b::text[]::jsonb[]) AS p
RETURNING id
"""

INSERT_MANY_NOTIFY = f"""
WITH jobs AS (
    INSERT INTO bench_raw.jobs (queue, payload)
    SELECT %s, p FROM unnest(%b::text[]::jsonb[]) AS p
    RETURNING id
)
SELECT count(*), pg_notify('{CHANNEL}', %s) FROM jobs
"""

# The picked ids as an array, so that the update finds each by primary key
# whatever the statistics say: joined to the pick as a subquery, the update of
# a small table can be planned as a hash join over all of it.
CLAIM = """
UPDATE bench_raw.jobs j
SET status = 'running', attempt = j.attempt + 1, locked_until = now() + interval '30 seconds'
WHERE j.id = ANY (ARRAY(
    SELECT id FROM bench_raw.jobs
    WHERE status = 'pending' AND queue = %s AND run_at <= now()
    ORDER BY priority DESC, run_at, id
    LIMIT %s
    FOR UPDATE SKIP LOCKED
))
RETURNING j.id, j.payload
"""

FINISH = "DELETE FROM bench_raw.jobs WHERE id = ANY(%s)"


def install(conn: psycopg.Connection[Any]) -> None:
    conn.execute(SCHEMA)


def enqueue(conn: psycopg.Connection[Any], queue: str, payload: Any, notify: bool = False) -> int:
    row = conn.execute(INSERT_ONE_NOTIFY if notify else INSERT_ONE, [queue, json.dumps(payload)])
    result = row.fetchone()
    assert result is not None
    return int(result[0])


def enqueue_many(
    conn: psycopg.Connection[Any], queue: str, payloads: Sequence[Any], notify: bool = False
) -> int:
    documents = [json.dumps(p) for p in payloads]
    if notify:
        conn.execute(INSERT_MANY_NOTIFY, [queue, documents, queue])
        return len(documents)
    return len(conn.execute(INSERT_MANY, [queue, documents]).fetchall())


def claim(conn: psycopg.Connection[Any], queue: str, batch_size: int) -> list[tuple[int, Any]]:
    return conn.execute(CLAIM, [queue, batch_size]).fetchall()


def finish(conn: psycopg.Connection[Any], ids: Sequence[int]) -> None:
    conn.execute(FINISH, [list(ids)])
