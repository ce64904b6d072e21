"""Scenario 3: enqueue-to-handler-start latency with an idle worker.

One worker process waits on an empty queue (LISTEN, with the poll interval as
the fallback). The producer enqueues jobs one at a time at a steady pace, each
carrying the time just before its enqueue call; the handler notes when it
started. Latency is start minus that time: it includes the enqueue's own commit,
the NOTIFY, the claim and handing the job to the handler. pyqueue enqueues with
Queue.enqueue; the baseline with an INSERT and pg_notify in one statement.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks import raw
from benchmarks.config import QUEUE, Config
from benchmarks.database import BenchDatabase
from benchmarks.drain import PENDING, check_exactly_once
from benchmarks.procs import running, wait_until
from benchmarks.report import Row, Target
from pyqueue import Queue

WARM_UP = -1  # the job number of the job that proves the worker is up


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile, interpolated between the nearest ranks."""
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def measure(db: BenchDatabase, config: Config, kind: str) -> list[float]:
    """Latencies in ms of config.latency_jobs jobs enqueued at a steady pace."""
    db.reset()
    with (
        Queue(db.dsn, max_connections=1) as queue,
        db.connect() as conn,
        db.connect() as probe,
        running(kind, db.dsn, config, 1) as procs,
    ):
        enqueue: Callable[[dict[str, Any]], object]
        if kind == "pyqueue":
            enqueue = lambda payload: queue.enqueue(QUEUE, payload)  # noqa: E731
        else:
            enqueue = lambda payload: raw.enqueue(conn, QUEUE, payload, notify=True)  # noqa: E731

        def idle() -> bool:
            return not probe.execute(PENDING[kind]).fetchone()[0]  # type: ignore[index]

        # The worker is up and idle once it has run a first job.
        enqueue({"n": WARM_UP, "t": time.time()})
        wait_until(idle, 60, f"the {kind} worker to start", 0.05, procs.check_alive)
        time.sleep(0.5)

        start = time.monotonic()
        for n in range(config.latency_jobs):
            # A fixed schedule, so a slow enqueue does not shift the ones after it.
            pause = start + n * config.latency_interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            enqueue({"n": n, "t": time.time()})
        wait_until(idle, 60, f"the {kind} worker to run the jobs", 0.05, procs.check_alive)
        procs.stop()
        notes = [note for note in procs.notes() if note[0] != WARM_UP]
    check_exactly_once(notes, config.latency_jobs, kind)
    return [(started - enqueued) * 1000 for _, started, enqueued in notes if enqueued]


def run(db: BenchDatabase, config: Config) -> tuple[list[Row], dict[str, Any]]:
    latencies = {kind: measure(db, config, kind) for kind in ("pyqueue", "raw")}
    db.reset()
    rows = []
    targets = {50: Target("ratio", at_most=1.1), 95: None, 99: Target("ratio", at_most=1.5)}
    for pct, target in targets.items():
        rows.append(
            Row(
                f"3. latency enqueue -> handler start, p{pct}",
                "ms",
                percentile(latencies["pyqueue"], pct),
                percentile(latencies["raw"], pct),
                target,
                f"{config.latency_jobs} jobs, one every {config.latency_interval * 1000:g} ms, "
                "idle worker"
                if pct == 50
                else "",
            )
        )
    details = {
        "latency_ms_max": {kind: max(values) for kind, values in latencies.items()},
        "latency_ms_mean": {kind: statistics.fmean(values) for kind, values in latencies.items()},
    }
    return rows, details
