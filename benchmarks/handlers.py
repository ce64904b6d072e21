"""Scenario 2b: handlers that take a fixed time, against what the slots allow.

A worker with c handler slots whose handlers take t seconds starts at most c/t
jobs a second, and no more than it drains no-op jobs. For each handler kind
(async def, plain) and concurrency, one worker process drains handler_jobs
jobs with no-op handlers and with handlers of handler_time, in alternating
order, handler_rounds times each. The row gives the median rate of the timed
handlers beside that limit, min(c/t, median no-op rate): the ratio is the share
of the limit left after the worker's own costs (claims, hand-offs, storing
outcomes). Each job is checked to have run exactly once, as in the drain.

c/t assumes that a handler told to take t seconds takes t. A second row per
shape measures, in the same run, the same handlers with no queue at all: c
asyncio tasks or threads, each sleeping t in turn through as many jobs. Its
rate is what this machine's timers and scheduler allow, and the ratio to it
is the share of that left by the queue.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import replace
from typing import Any

from benchmarks.config import Config
from benchmarks.database import BenchDatabase
from benchmarks.drain import drain_once, handlers
from benchmarks.report import Row, Target


def bare_rate(async_handler: bool, concurrency: int, takes: float, jobs: int) -> float:
    """Jobs a second of `concurrency` slots running handlers of `takes` seconds, no queue."""
    each = max(1, jobs // concurrency)

    async def slot() -> None:
        for _ in range(each):
            await asyncio.sleep(takes)

    async def slots() -> None:
        await asyncio.gather(*(slot() for _ in range(concurrency)))

    def thread() -> None:
        for _ in range(each):
            time.sleep(takes)

    start = time.perf_counter()
    if async_handler:
        asyncio.run(slots())
    else:
        threads = [threading.Thread(target=thread) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return each * concurrency / (time.perf_counter() - start)


def run(db: BenchDatabase, config: Config) -> tuple[list[Row], dict[str, Any]]:
    rows = []
    details: dict[str, Any] = {}
    takes = config.handler_time
    for async_handler in (True, False):
        for concurrency in config.handler_concurrency:
            shape = replace(
                config,
                concurrency=concurrency,
                async_handler=async_handler,
                drain_jobs=config.handler_jobs,
            )
            runs: dict[str, list[float]] = {"no-op": [], "timed": [], "bare": []}
            for r in range(config.handler_rounds):
                order = [("no-op", 0.0), ("timed", takes)]
                for name, seconds in order if r % 2 == 0 else order[::-1]:
                    timed = replace(shape, handler_seconds=seconds)
                    runs[name].append(drain_once(db, timed, "pyqueue", 1))
                runs["bare"].append(
                    bare_rate(async_handler, concurrency, takes, config.handler_jobs)
                )
            no_op = statistics.median(runs["no-op"])
            limit = min(concurrency / takes, no_op)
            rows.append(
                Row(
                    f"2b. {handlers(shape, concurrency)} of {takes * 1000:g} ms, 1 process",
                    "jobs/s",
                    statistics.median(runs["timed"]),
                    limit,
                    Target("ratio", at_least=0.9),
                    "baseline: the c/t limit, or the no-op drain rate if lower; "
                    f"median of {config.handler_rounds} runs of {config.handler_jobs:,} jobs",
                )
            )
            rows.append(
                Row(
                    f"2b. {handlers(shape, concurrency)} of {takes * 1000:g} ms, against the "
                    "same handlers with no queue",
                    "jobs/s",
                    statistics.median(runs["timed"]),
                    min(statistics.median(runs["bare"]), no_op),
                    None,
                    "baseline: the same sleeps on as many tasks or threads, no queue "
                    "(or the no-op drain rate if lower)",
                )
            )
            details[f"handler_runs_{'async' if async_handler else 'plain'}_{concurrency}"] = runs
    db.reset()
    return rows, details
