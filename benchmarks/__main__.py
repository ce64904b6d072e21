"""Run every benchmark scenario and print one table: `.venv/bin/python -m benchmarks`.

Each figure stands beside a raw-SQL baseline measured in the same run on the same
server, and as a ratio to it, because the machines are shared and noisy. The
results also go to benchmarks/results.json (or --json PATH).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import backlog, drain, enqueue, handlers, latency, soak
from benchmarks.config import FULL, QUICK, Config
from benchmarks.database import BenchDatabase, bench_database
from benchmarks.report import Report, Row, render_table

DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"

SCENARIOS = ("enqueue", "drain", "handlers", "latency", "backlog", "soak")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for the CI smoke run")
    parser.add_argument(
        "--database-url",
        help="use this server (default: $DATABASE_URL, else a private temporary PostgreSQL)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument("--soak-seconds", type=float, help="soak duration (full: 300, quick: 10)")
    parser.add_argument(
        "--soak-rate",
        type=float,
        help="soak producer rate, jobs/s (default: 0.15 x the drain rate)",
    )
    parser.add_argument("--batch-size", type=int, help="jobs per claim, both sides (default 100)")
    parser.add_argument(
        "--concurrency", type=int, help="pyqueue worker handler slots (default 100)"
    )
    parser.add_argument(
        "--plain-handler",
        action="store_true",
        help="pyqueue's no-op handler as a plain def, run on threads (default: async def)",
    )
    parser.add_argument("--prefetch", type=int, help="pyqueue worker prefetch (default: its own)")
    parser.add_argument("--drain-jobs", type=int, help="jobs per drain run (full: 50,000)")
    parser.add_argument("--drain-rounds", type=int, help="drain runs per side (full: 5)")
    parser.add_argument(
        "--processes", help="drain worker processes, comma-separated (default 1,2,4)"
    )
    parser.add_argument(
        "--only", action="append", choices=SCENARIOS, help="run only this scenario (repeatable)"
    )
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    config = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.soak_seconds is not None:
        changes["soak_seconds"] = args.soak_seconds
    if args.soak_rate is not None:
        changes["soak_rate"] = args.soak_rate
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    if args.concurrency is not None:
        changes["concurrency"] = args.concurrency
    if args.plain_handler:
        changes["async_handler"] = False
    if args.prefetch is not None:
        changes["prefetch"] = args.prefetch
    if args.drain_jobs is not None:
        changes["drain_jobs"] = args.drain_jobs
    if args.drain_rounds is not None:
        changes["drain_rounds"] = args.drain_rounds
    if args.processes:
        changes["drain_processes"] = tuple(int(n) for n in args.processes.split(","))
    return replace(config, **changes)


def settings(db: BenchDatabase, config: Config, quick: bool) -> dict[str, Any]:
    return {
        "mode": "quick (smoke sizes: figures are not meaningful)" if quick else "full",
        "server": db.server,
        "postgresql": db.setting("server_version"),
        "synchronous_commit": db.setting("synchronous_commit"),
        "fsync": db.setting("fsync"),
        "shared_buffers": db.setting("shared_buffers"),
        "batch size (claim, both sides)": config.batch_size,
        "worker concurrency (pyqueue handler slots)": config.concurrency,
        "pyqueue handler": "async def" if config.async_handler else "plain def (on threads)",
        "pyqueue prefetch": "the worker's default" if config.prefetch is None else config.prefetch,
        "narrow drain concurrency (1 process)": config.narrow_concurrency,
        "handlers scenario: time / concurrency / jobs / runs": (
            f"{config.handler_time * 1000:g} ms / "
            f"{', '.join(map(str, config.handler_concurrency))} / "
            f"{config.handler_jobs:,} / {config.handler_rounds}"
        ),
        "worker processes (drain)": " then ".join(map(str, config.drain_processes)),
        "worker processes (latency, soak)": 1,
        "enqueue batch / seconds per side / rounds": (
            f"{config.enqueue_batch} / {config.enqueue_seconds:g} / {config.enqueue_rounds}"
        ),
        "drain jobs / runs per side (median reported)": (
            f"{config.drain_jobs:,} / {config.drain_rounds}"
        ),
        "latency jobs / pace": f"{config.latency_jobs} / {config.latency_interval * 1000:g} ms",
        "backlog due / small / large": (
            f"{config.backlog_due:,} / {config.backlog_small:,} / {config.backlog_large:,}"
        ),
        "backlog rounds x jobs (per side and size)": (
            f"{config.backlog_rounds} x {config.backlog_round_jobs:,}"
        ),
        "soak seconds / window": f"{config.soak_seconds:g} / {config.soak_window_seconds:g}",
        "cpus": os.cpu_count(),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
    }


def run(args: argparse.Namespace) -> Report:
    config = build_config(args)
    wanted = set(args.only or SCENARIOS)
    started = time.monotonic()
    with bench_database(args.database_url) as db:
        report = Report(settings(db, config, args.quick))
        context: dict[str, Any] = {}

        def step(name: str, body: Callable[[], list[Row]]) -> None:
            if name not in wanted:
                return
            t0 = time.monotonic()
            print(f"[{time.monotonic() - started:6.1f}s] {name} ...", file=sys.stderr, flush=True)
            try:
                report.rows.extend(body())
            except Exception as error:
                traceback.print_exc()
                report.errors[name] = f"{type(error).__name__}: {error}"
            report.details.setdefault("seconds", {})[name] = round(time.monotonic() - t0, 1)

        def run_backlog() -> list[Row]:
            rows, details = backlog.run(db, config)
            report.details.update(details)
            return rows

        def run_drain() -> list[Row]:
            rows, details = drain.run(db, config)
            report.details.update(details)
            context["drain_rate"] = details.get("drain_rate_one_process")
            return rows

        def run_soak() -> list[Row]:
            rows, details = soak.run(db, config, context.get("drain_rate"))
            report.details.update(details)
            return rows

        def run_handlers() -> list[Row]:
            rows, details = handlers.run(db, config)
            report.details.update(details)
            return rows

        step("enqueue", lambda: enqueue.run(db, config))
        step("drain", run_drain)
        step("handlers", run_handlers)

        def run_latency() -> list[Row]:
            rows, details = latency.run(db, config)
            report.details.update(details)
            return rows

        step("latency", run_latency)
        step("backlog", run_backlog)
        step("soak", run_soak)
    report.settings["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report.settings["total seconds"] = round(time.monotonic() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(render_table(report))
    report.write_json(args.json)
    print(f"\nResults written to {args.json}")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
