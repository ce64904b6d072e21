"""Scenario 2: drain a full queue with one worker process, then two and four;
then one process with few handler slots (narrow_concurrency).

Each side runs `drain_rounds` times, alternating which goes first, and the
median run is reported. The jobs are enqueued first (setup, not measured). The
worker processes then run a no-op handler that notes each job in its process's
ledger (a list append, written out when the process stops). The rate is taken
from those notes: jobs started between the first and the last handler start,
so process start-up and the harness's polling are not counted, for either side.

Exactly once: every job number appears in the ledgers once and only once; for
pyqueue every job is also completed with attempt = 1, for the baseline the
table is empty (its finish deletes the batch).
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import replace
from typing import Any

from psycopg.types.json import Jsonb

from benchmarks import raw
from benchmarks.config import QUEUE, Config
from benchmarks.database import BenchDatabase
from benchmarks.procs import running, wait_until
from benchmarks.report import Row, Target
from benchmarks.workerproc import Note

CHUNK = 1000

PENDING = {
    "pyqueue": "SELECT EXISTS (SELECT 1 FROM pyqueue.jobs WHERE status IN ('pending', 'running'))",
    "raw": "SELECT EXISTS (SELECT 1 FROM bench_raw.jobs)",
}


def fill(db: BenchDatabase, kind: str, jobs: int) -> None:
    """Enqueue jobs numbered 0 .. jobs-1 in batches, then settle the tables."""
    with db.connect() as conn:
        for first in range(0, jobs, CHUNK):
            payloads = [{"n": n} for n in range(first, min(first + CHUNK, jobs))]
            if kind == "pyqueue":
                conn.execute(
                    "SELECT count(*) FROM pyqueue.enqueue_batch(%s, %b::jsonb[])",
                    [QUEUE, [Jsonb(p) for p in payloads]],
                )
            else:
                raw.enqueue_many(conn, QUEUE, payloads)
        db.settle(conn)


def check_exactly_once(notes: list[Note], jobs: int, kind: str) -> None:
    counts = Counter(n for n, _, _ in notes)
    twice = [n for n, c in counts.items() if c > 1]
    missing = [n for n in range(jobs) if n not in counts]
    if twice or missing or len(counts) != jobs:
        raise AssertionError(
            f"{kind}: {len(twice)} jobs ran more than once (e.g. {twice[:5]}), "
            f"{len(missing)} never ran (e.g. {missing[:5]})"
        )


def check_database(db: BenchDatabase, kind: str, jobs: int) -> None:
    with db.connect() as conn:
        if kind == "pyqueue":
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE status = 'completed' AND attempt = 1)"
                " FROM pyqueue.jobs"
            ).fetchone()
            assert row is not None
            if tuple(row) != (jobs, jobs):
                raise AssertionError(
                    f"pyqueue: {row[1]} of {row[0]} jobs completed on the first attempt, "
                    f"expected all {jobs}"
                )
        else:
            left = conn.execute("SELECT count(*) FROM bench_raw.jobs").fetchone()
            assert left is not None
            if left[0] != 0:
                raise AssertionError(f"raw: {left[0]} jobs left in the table")


def rate_of(notes: list[Note]) -> float:
    starts = sorted(start for _, start, _ in notes)
    return (len(starts) - 1) / (starts[-1] - starts[0])


def drain_once(db: BenchDatabase, config: Config, kind: str, processes: int) -> float:
    db.reset()
    fill(db, kind, config.drain_jobs)
    with db.connect() as conn, running(kind, db.dsn, config, processes) as procs:
        wait_until(
            lambda: not conn.execute(PENDING[kind]).fetchone()[0],  # type: ignore[index]
            timeout=60 + config.drain_jobs / 200,
            what=f"{kind} to drain {config.drain_jobs} jobs",
            alive=procs.check_alive,
        )
        procs.stop()
        notes = procs.notes()
    check_exactly_once(notes, config.drain_jobs, kind)
    check_database(db, kind, config.drain_jobs)
    return rate_of(notes)


def cases(config: Config) -> list[tuple[int, int]]:
    """(processes, pyqueue concurrency) of each row, in the order run."""
    found = [(processes, config.concurrency) for processes in config.drain_processes]
    if config.narrow_concurrency != config.concurrency:
        found.append((1, config.narrow_concurrency))
    return found


def target(config: Config, processes: int, concurrency: int) -> Target:
    if processes > 1:
        return Target("ratio", at_least=0.7)
    return Target("ratio", at_least=0.5 if concurrency <= config.narrow_concurrency else 0.8)


def handlers(config: Config, concurrency: int) -> str:
    return f"{concurrency} {'async def' if config.async_handler else 'plain'} handlers"


def run(db: BenchDatabase, config: Config) -> tuple[list[Row], dict[str, Any]]:
    rows = []
    details: dict[str, Any] = {}
    for n, (processes, concurrency) in enumerate(cases(config)):
        shape = replace(config, concurrency=concurrency)
        runs: dict[str, list[float]] = {"pyqueue": [], "raw": []}
        for r in range(config.drain_rounds):
            order = ["pyqueue", "raw"] if (n + r) % 2 == 0 else ["raw", "pyqueue"]
            for kind in order:
                runs[kind].append(drain_once(db, shape, kind, processes))
        rates = {kind: statistics.median(rates_of_runs) for kind, rates_of_runs in runs.items()}
        plural = "process" if processes == 1 else "processes"
        rows.append(
            Row(
                f"2. drain {config.drain_jobs:,} jobs, {processes} worker {plural}, "
                f"{handlers(config, concurrency)}",
                "jobs/s",
                rates["pyqueue"],
                rates["raw"],
                target(config, processes, concurrency),
                f"median of {config.drain_rounds} runs per side, each job checked to have run "
                "exactly once"
                if n == 0
                else "",
            )
        )
        key = f"{processes}_processes_concurrency_{concurrency}"
        details[f"drain_rate_{key}"] = rates
        details[f"drain_runs_{key}"] = runs
        if processes == 1 and concurrency == config.concurrency:
            details["drain_rate_one_process"] = rates["pyqueue"]
    db.reset()
    return rows, details
