"""Scenario 2b: handlers that take a fixed time, against what the slots allow.

A worker with c handler slots whose handlers take t seconds starts at most c/t
jobs a second, and no more than it drains no-op jobs. For each handler kind
(async def, plain) and concurrency, one worker process drains handler_jobs
jobs with no-op handlers and with handlers of handler_time, in alternating
order, handler_rounds times each. The row gives the median rate of the timed
handlers beside that limit, min(c/t, median no-op rate): the ratio is the share
of the limit left after the worker's own costs (claims, hand-offs, storing
outcomes). Each job is checked to have run exactly once, as in the drain.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Any

from benchmarks.config import Config
from benchmarks.database import BenchDatabase
from benchmarks.drain import drain_once, handlers
from benchmarks.report import Row, Target


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
            runs: dict[str, list[float]] = {"no-op": [], "timed": []}
            for r in range(config.handler_rounds):
                order = [("no-op", 0.0), ("timed", takes)]
                for name, seconds in order if r % 2 == 0 else order[::-1]:
                    timed = replace(shape, handler_seconds=seconds)
                    runs[name].append(drain_once(db, timed, "pyqueue", 1))
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
            details[f"handler_runs_{'async' if async_handler else 'plain'}_{concurrency}"] = runs
    db.reset()
    return rows, details
