"""Scenario 1: enqueue from one producer, one job per transaction and in batches.

pyqueue goes through its Python driver (`Queue.enqueue`, `Queue.enqueue_many`),
as an application would; the baseline is a plain single-row INSERT and a
multi-row INSERT (unnest of an array of JSON texts, cast to jsonb[]) on one
psycopg connection, payloads sent as pyqueue's client sends them. Both
return the new ids, as any enqueue must. Every call is its own transaction,
committed with the server's synchronous_commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from benchmarks import raw
from benchmarks.config import QUEUE, Config
from benchmarks.database import BenchDatabase
from benchmarks.report import Row, Target
from pyqueue import Queue


def _rate(step: Callable[[int], int], seconds: float) -> tuple[int, float]:
    """Call step(i) until `seconds` pass; return jobs enqueued and time taken."""
    jobs = 0
    start = time.perf_counter()
    deadline = start + seconds
    i = 0
    while time.perf_counter() < deadline:
        jobs += step(i)
        i += 1
    return jobs, time.perf_counter() - start


def _alternate(
    pyqueue_step: Callable[[int], int],
    raw_step: Callable[[int], int],
    config: Config,
) -> tuple[float, float]:
    """Alternate rounds of both sides; return each side's jobs/s over its rounds."""
    totals = {"pyqueue": [0, 0.0], "raw": [0, 0.0]}
    per_round = config.enqueue_seconds / config.enqueue_rounds
    for n in range(config.enqueue_rounds):
        # Swap who goes first each round.
        order = [("pyqueue", pyqueue_step), ("raw", raw_step)]
        for name, step in order if n % 2 == 0 else reversed(order):
            jobs, took = _rate(step, per_round)
            totals[name][0] += jobs
            totals[name][1] += took
    return (
        totals["pyqueue"][0] / totals["pyqueue"][1],
        totals["raw"][0] / totals["raw"][1],
    )


def run(db: BenchDatabase, config: Config) -> list[Row]:
    db.reset()
    batch = config.enqueue_batch
    with Queue(db.dsn, max_connections=1) as queue, db.connect() as conn:
        # Warm both paths (connections, plans) before the clock starts.
        queue.enqueue(QUEUE, {"n": -1})
        raw.enqueue(conn, QUEUE, {"n": -1})

        def pyqueue_one(i: int) -> int:
            queue.enqueue(QUEUE, {"n": i})
            return 1

        def raw_one(i: int) -> int:
            raw.enqueue(conn, QUEUE, {"n": i})
            return 1

        single = _alternate(pyqueue_one, raw_one, config)

        def pyqueue_many(i: int) -> int:
            return len(queue.enqueue_many(QUEUE, [{"n": i * batch + k} for k in range(batch)]))

        def raw_many(i: int) -> int:
            return raw.enqueue_many(conn, QUEUE, [{"n": i * batch + k} for k in range(batch)])

        many = _alternate(pyqueue_many, raw_many, config)

    return [
        Row(
            "1. enqueue, one job per transaction",
            "jobs/s",
            single[0],
            single[1],
            Target("ratio", at_least=0.8),
            "baseline: single-row INSERT",
        ),
        Row(
            f"1. enqueue, batches of {batch:,}",
            "jobs/s",
            many[0],
            many[1],
            Target("ratio", at_least=0.8),
            "baseline: multi-row INSERT from unnest(text[]::jsonb[])",
        ),
    ]
