"""Scenario 5: producer and worker together at a steady high rate, for minutes.

pyqueue and the baseline soak at the same time, on the same server, each with
its own producer thread and one worker process, so that both meet the same
noise; running them one after the other would double the run's length. Each
producer enqueues small batches on a fixed schedule (one transaction every
10 ms). The rate is --soak-rate, or by default a share (soak_rate_share in
config.py) of pyqueue's one-process drain rate measured earlier in the run.

pyqueue's completed jobs are purged as the queue's retention says, by the
worker alone: retention is set to half a window, and the worker's own
maintenance passes (pyqueue.maintain, at the default interval) delete what it
no longer keeps; nothing else purges. The baseline deletes each job as it
finishes, so it keeps no history at all.

Figures: jobs started in the last window over those in the first (a worker
that slows down as the table churns shows here), and the job table's total
size (heap, indexes, TOAST) at the end over its size half-way through. The
first half is warm-up: the table fills until retention, purge and autovacuum
balance (about a minute and a half at the default sizes), so growth in the
second half is growth without bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from benchmarks import raw
from benchmarks.config import QUEUE, Config
from benchmarks.database import BenchDatabase
from benchmarks.drain import PENDING, check_exactly_once
from benchmarks.latency import WARM_UP
from benchmarks.procs import running, wait_until
from benchmarks.report import Row, Target
from pyqueue import Queue

TICK = 0.01  # one producer transaction every TICK seconds
TABLES = {"pyqueue": "pyqueue.jobs", "raw": "bench_raw.jobs"}


class Producer(threading.Thread):
    """Enqueues `chunk` jobs every TICK until told to stop; counts what it sent."""

    def __init__(self, enqueue: Callable[[list[dict[str, Any]]], object], chunk: int) -> None:
        super().__init__(daemon=True)
        self.enqueue = enqueue
        self.chunk = chunk
        self.sent = 0
        self.behind = 0.0  # seconds the schedule slipped at worst
        self.error: BaseException | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        tick = 0
        try:
            while not self.stopping.is_set():
                due = start + tick * TICK
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                else:
                    self.behind = max(self.behind, now - due)
                payloads = [{"n": self.sent + k} for k in range(self.chunk)]
                self.enqueue(payloads)
                self.sent += self.chunk
                tick += 1
        except BaseException as error:
            self.error = error


def run(
    db: BenchDatabase, config: Config, drain_rate: float | None
) -> tuple[list[Row], dict[str, Any]]:
    if config.soak_rate is not None:
        rate = config.soak_rate
    elif drain_rate:
        rate = config.soak_rate_share * drain_rate
    else:
        rate = 500.0
    chunk = max(1, round(rate * TICK))
    rate = chunk / TICK
    window = config.soak_window_seconds
    db.reset()
    with (
        db.connect() as admin,
        db.connect() as raw_conn,
        Queue(db.dsn, max_connections=1) as queue,
        running("pyqueue", db.dsn, config, 1, poll_interval=1.0) as pyqueue_procs,
        running("raw", db.dsn, config, 1, poll_interval=1.0) as raw_procs,
    ):
        admin.execute(
            "SELECT pyqueue.configure_queue(%s, retention => %s)",
            [QUEUE, timedelta(seconds=window / 2)],
        )
        producers = {
            "pyqueue": Producer(lambda p: queue.enqueue_many(QUEUE, p), chunk),
            "raw": Producer(lambda p: raw.enqueue_many(raw_conn, QUEUE, p, notify=True), chunk),
        }
        # Both workers are up and idle before the clock starts.
        queue.enqueue(QUEUE, {"n": WARM_UP})
        raw.enqueue(raw_conn, QUEUE, {"n": WARM_UP}, notify=True)
        for kind, procs in (("pyqueue", pyqueue_procs), ("raw", raw_procs)):
            wait_until(
                lambda kind=kind: not admin.execute(PENDING[kind]).fetchone()[0],  # type: ignore[misc,index]
                60,
                f"the {kind} worker to start",
                0.05,
                procs.check_alive,
            )
        samples: list[dict[str, float]] = []
        started = time.time()
        for producer in producers.values():
            producer.start()
        try:
            while time.time() - started < config.soak_seconds:
                pyqueue_procs.check_alive()
                raw_procs.check_alive()
                samples.append(_sample(admin, started))
                time.sleep(min(1.0, config.soak_seconds / 20))
        finally:
            for producer in producers.values():
                producer.stopping.set()
                producer.join()
        ended = time.time()
        samples.append(_sample(admin, started))
        for name, producer in producers.items():
            if producer.error is not None:
                raise RuntimeError(f"{name} producer failed: {producer.error!r}")
        notes = {}
        for kind, procs in (("pyqueue", pyqueue_procs), ("raw", raw_procs)):
            # A worker that fell behind has its backlog to finish first.
            left = samples[-1][f"{kind}_waiting"]
            wait_until(
                lambda kind=kind: not admin.execute(PENDING[kind]).fetchone()[0],  # type: ignore[misc,index]
                60 + left / 1000,
                f"the {kind} worker to finish the soak's jobs ({left:,.0f} waiting at the end)",
                alive=procs.check_alive,
            )
            procs.stop()
            notes[kind] = [n for n in procs.notes() if n[0] != WARM_UP]
            check_exactly_once(notes[kind], producers[kind].sent, kind)
    db.reset()

    throughput: dict[str, dict[str, float]] = {}
    sizes: dict[str, dict[str, float]] = {}
    half_way = next(s for s in samples if s["t"] >= config.soak_seconds / 2)
    for kind in ("pyqueue", "raw"):
        starts = [s - started for _, s, _ in notes[kind]]
        duration = ended - started
        first = sum(1 for s in starts if 0 <= s < window) / window
        last = sum(1 for s in starts if duration - window <= s < duration) / window
        throughput[kind] = {"first": first, "last": last}
        sizes[kind] = {"half_way": half_way[kind], "end": samples[-1][kind]}
    rows = [
        Row(
            "5. soak: throughput, first window",
            "jobs/s",
            throughput["pyqueue"]["first"],
            throughput["raw"]["first"],
            note=f"both at once, {rate:,.0f} jobs/s offered each ({chunk} per transaction), "
            f"{config.soak_seconds:g} s, windows of {window:g} s",
        ),
        Row(
            "5. soak: throughput, last window",
            "jobs/s",
            throughput["pyqueue"]["last"],
            throughput["raw"]["last"],
        ),
        Row(
            "5. soak: throughput last / first window",
            "x",
            _ratio(throughput["pyqueue"]["last"], throughput["pyqueue"]["first"]),
            _ratio(throughput["raw"]["last"], throughput["raw"]["first"]),
            Target("value", at_least=0.85),
        ),
        Row(
            "5. soak: table+index size end / half-way",
            "x",
            _ratio(sizes["pyqueue"]["end"], sizes["pyqueue"]["half_way"]),
            _ratio(sizes["raw"]["end"], sizes["raw"]["half_way"]),
            Target("value", at_most=1.5),
            f"pyqueue {_mib(sizes['pyqueue']['half_way'])} -> {_mib(sizes['pyqueue']['end'])}, "
            f"raw {_mib(sizes['raw']['half_way'])} -> {_mib(sizes['raw']['end'])}; "
            f"retention {window / 2:g} s, purged by the worker's own maintenance",
        ),
    ]
    details = {
        "soak": {
            "rate_offered_each": rate,
            "sent": {k: p.sent for k, p in producers.items()},
            "producer_slip_max_s": {k: p.behind for k, p in producers.items()},
            "throughput": throughput,
            "sizes": sizes,
            "samples": samples,
        }
    }
    return rows, details


def _sample(conn: Any, started: float) -> dict[str, float]:
    """Table sizes and pending counts now, `t` seconds into the soak."""
    row = conn.execute(
        "SELECT pg_total_relation_size('pyqueue.jobs'), pg_total_relation_size('bench_raw.jobs'),"
        " (SELECT count(*) FROM pyqueue.jobs WHERE status IN ('pending', 'running')),"
        " (SELECT count(*) FROM bench_raw.jobs)"
    ).fetchone()
    return {
        "t": time.time() - started,
        "pyqueue": row[0],
        "raw": row[1],
        "pyqueue_waiting": row[2],
        "raw_waiting": row[3],
    }


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB"
