"""Scenario 4: claim-and-complete throughput against a small and a huge backlog.

Both sizes have the same number of jobs due on the measured queue; the large
one adds jobs that must not be claimed: half due a day later on the same queue,
half due now on ten other queues. Each size has a database of its own on the
same server. Those rows are inserted straight into the tables with
generate_series (setup, not measured), then the tables are vacuumed and
analysed. One connection per size claims a batch and completes it, in two
transactions, in rounds of a few thousand jobs that alternate between the two
sizes and the two sides: pyqueue with claim_batch and complete_batch, the
baseline with its UPDATE ... SKIP LOCKED and DELETE. After each round as many
new due jobs are added (not timed), so that every round sees the backlog it
started with.

The small database also has a queue with a concurrency limit (flow control,
sql/22_flow.sql) set high enough never to bind: its rounds measure what the
limit's bookkeeping adds to each claim (the queue's lock, its running count).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import psycopg

from benchmarks import raw
from benchmarks.config import QUEUE, Config
from benchmarks.database import BenchDatabase
from benchmarks.report import Row, Target

PYQUEUE_FILL = """
INSERT INTO pyqueue.jobs (queue, payload, run_at, max_attempts)
SELECT CASE WHEN g <= %(due)s OR g %% 2 = 0 THEN %(queue)s ELSE 'other-' || g %% 10 END,
       jsonb_build_object('n', g),
       CASE WHEN g <= %(due)s OR g %% 2 = 1 THEN now() - interval '1 second'
            ELSE now() + interval '1 day' + g * interval '1 millisecond' END,
       3
FROM generate_series(1, %(total)s) AS g
"""

RAW_FILL = """
INSERT INTO bench_raw.jobs (queue, payload, run_at)
SELECT CASE WHEN g <= %(due)s OR g %% 2 = 0 THEN %(queue)s ELSE 'other-' || g %% 10 END,
       jsonb_build_object('n', g),
       CASE WHEN g <= %(due)s OR g %% 2 = 1 THEN now() - interval '1 second'
            ELSE now() + interval '1 day' + g * interval '1 millisecond' END
FROM generate_series(1, %(total)s) AS g
"""

LIMITED = f"{QUEUE}-limited"
# Room for ten batches running at once: the claims pay for the limit, never wait on it.
LIMIT_IN_BATCHES = 10

PYQUEUE_CLAIM = "SELECT id, lease_token FROM pyqueue.claim_batch(%s, 'bench-backlog', %s)"
PYQUEUE_COMPLETE = "SELECT count(*) FROM pyqueue.complete_batch(%s, %s)"


def _pyqueue_round(
    conn: psycopg.Connection[Any], jobs: int, batch: int, queue: str = QUEUE
) -> float:
    done = 0
    start = time.perf_counter()
    while done < jobs:
        claimed = conn.execute(PYQUEUE_CLAIM, [[queue], min(batch, jobs - done)]).fetchall()
        if not claimed:
            raise RuntimeError("pyqueue backlog ran dry: the fill put too few jobs due")
        row = conn.execute(
            PYQUEUE_COMPLETE, [[r[0] for r in claimed], [r[1] for r in claimed]]
        ).fetchone()
        assert row is not None and row[0] == len(claimed), "complete_batch lost jobs"
        done += len(claimed)
    return done / (time.perf_counter() - start)


def _raw_round(conn: psycopg.Connection[Any], jobs: int, batch: int) -> float:
    done = 0
    start = time.perf_counter()
    while done < jobs:
        claimed = raw.claim(conn, QUEUE, min(batch, jobs - done))
        if not claimed:
            raise RuntimeError("raw backlog ran dry: the fill put too few jobs due")
        raw.finish(conn, [r[0] for r in claimed])
        done += len(claimed)
    return done / (time.perf_counter() - start)


def _fill(db: BenchDatabase, total: int, config: Config, limited: bool = False) -> float:
    """Empty both queues and fill each to `total` jobs; return the seconds it took.

    `limited` also fills the concurrency-limited queue with as many due jobs.
    """
    db.reset()
    fill = {"due": config.backlog_due, "total": total, "queue": QUEUE}
    started = time.perf_counter()
    with db.connect() as conn:
        conn.execute(PYQUEUE_FILL, fill)
        conn.execute(RAW_FILL, fill)
        if limited:
            due = config.backlog_due
            conn.execute(PYQUEUE_FILL, {"due": due, "total": due, "queue": LIMITED})
            conn.execute(
                "SELECT pyqueue.configure_queue(%s, concurrency => %s)",
                [LIMITED, LIMIT_IN_BATCHES * config.batch_size],
            )
        db.settle(conn)
    return time.perf_counter() - started


def _round(conn: psycopg.Connection[Any], side: str, config: Config) -> float:
    """One round of claim+complete on `side`, then its queue topped up again (not timed)."""
    jobs = config.backlog_round_jobs
    # The fill again, all of it due on the measured queue.
    refill = {"due": jobs, "total": jobs, "queue": QUEUE}
    if side == "pyqueue":
        rate = _pyqueue_round(conn, jobs, config.batch_size)
        conn.execute(PYQUEUE_FILL, refill)
    elif side == "limited":
        rate = _pyqueue_round(conn, jobs, config.batch_size, LIMITED)
        conn.execute(PYQUEUE_FILL, {**refill, "queue": LIMITED})
    else:
        rate = _raw_round(conn, jobs, config.batch_size)
        conn.execute(RAW_FILL, refill)
    return rate


def run(db: BenchDatabase, config: Config) -> tuple[list[Row], dict[str, Any]]:
    # The two backlogs live in two databases on the same server, and their
    # rounds alternate, as the two sides' do: a drift in the machine's load
    # then falls on both sizes alike, and the ratio of large to small is the
    # backlog's effect, not the load's.
    assert config.backlog_round_jobs < config.backlog_due, "a round must not find the queue empty"
    rates: dict[tuple[str, str], list[float]] = {}
    with db.sibling("_large") as large_db:
        fill_seconds = {
            "small": _fill(db, config.backlog_small, config, limited=True),
            "large": _fill(large_db, config.backlog_large, config),
        }
        with db.connect() as small_conn, large_db.connect() as large_conn:
            sizes = [("small", small_conn), ("large", large_conn)]
            for n in range(config.backlog_rounds):
                sides = ["pyqueue", "raw"] if (n // 2) % 2 == 0 else ["raw", "pyqueue"]
                for size, conn in sizes if n % 2 == 0 else reversed(sizes):
                    for side in sides + ["limited"] * (size == "small"):
                        rates.setdefault((size, side), []).append(_round(conn, side, config))
    db.reset()
    # Harmonic means: the rate over all rounds' jobs and time together.
    small = {side: statistics.harmonic_mean(rates[("small", side)]) for side in ("pyqueue", "raw")}
    large = {side: statistics.harmonic_mean(rates[("large", side)]) for side in ("pyqueue", "raw")}
    limited = statistics.harmonic_mean(rates[("small", "limited")])
    small_label = f"{config.backlog_small:,}"
    large_label = f"{config.backlog_large:,}"
    rows = [
        Row(f"4. claim+complete, {small_label} queued", "jobs/s", small["pyqueue"], small["raw"]),
        Row(
            f"4. claim+complete, {large_label} queued",
            "jobs/s",
            large["pyqueue"],
            large["raw"],
            note=f"{config.backlog_due:,} due on the measured queue, the rest due in a day "
            "or on other queues",
        ),
        Row(
            f"4. backlog ratio {large_label} / {small_label}",
            "x",
            large["pyqueue"] / small["pyqueue"],
            large["raw"] / small["raw"],
            Target("value", at_least=0.8),
        ),
        Row(
            f"4. claim+complete, {small_label} queued, concurrency limit",
            "jobs/s",
            limited,
            small["raw"],
            note=f"queue with concurrency => {LIMIT_IN_BATCHES * config.batch_size} (never "
            f"binding); unlimited: {small['pyqueue']:,.0f} jobs/s",
        ),
    ]
    details = {
        "backlog_fill_seconds": fill_seconds,
        "backlog_rounds": {f"{size} {side}": r for (size, side), r in rates.items()},
    }
    return rows, details
