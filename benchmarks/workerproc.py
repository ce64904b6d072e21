"""A worker process for the benchmarks: pyqueue's Worker, or the raw baseline's loop.

    python -m benchmarks.workerproc pyqueue|raw DSN LEDGER [--batch-size N] ...

Both run the same handler, which notes in memory the job's number, when it
started, and when it was enqueued (for the latency scenario), then returns at
once, or after --handler-seconds (pyqueue only: the handlers scenario); the process
writes these notes to LEDGER when it stops (SIGTERM). The harness reads every
ledger afterwards to check that each job ran exactly once and to time the run.
The notes cost a list append per job, on both sides alike.

With --ready and --go, the process says it is ready (it can act on SIGTERM)
by creating the --ready file, then waits for the --go file before it claims:
the harness starts every process of a run together, and never stops one that
could not yet write its ledger.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import raw

# (job number, handler start time, enqueue time or None), in time.time() seconds:
# comparable across the processes of one machine.
Note = tuple[int, float, float | None]


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.notes: list[Note] = []

    def note(self, payload: Any) -> None:
        self.notes.append((payload["n"], time.time(), payload.get("t")))

    def write(self) -> None:
        lines = [
            f"{n} {start!r} {'-' if enq is None else repr(enq)}\n" for n, start, enq in self.notes
        ]
        self.path.write_text("".join(lines))


def read_ledgers(paths: list[Path]) -> list[Note]:
    notes: list[Note] = []
    for path in paths:
        for line in path.read_text().splitlines():
            n, start, enq = line.split()
            notes.append((int(n), float(start), None if enq == "-" else float(enq)))
    return notes


def wait_for_go(args: argparse.Namespace, stopping: Callable[[], bool]) -> None:
    """Say ready, then wait until the harness says go (or a stop is asked for)."""
    if args.ready is None or args.go is None:
        return
    args.ready.touch()
    while not args.go.exists() and not stopping():
        time.sleep(0.005)


def run_pyqueue(args: argparse.Namespace, ledger: Ledger) -> None:
    from pyqueue.worker import Worker

    # prefetch only when asked for, so that this harness also drives releases without it.
    shape = {} if args.prefetch is None else {"prefetch": args.prefetch}
    worker = Worker(
        concurrency=args.concurrency,
        batch_size=args.batch_size,
        **shape,
        poll_interval=args.poll_interval,
        grace_period=10.0,
        name=f"bench-{args.kind}",
    )

    takes = args.handler_seconds
    if args.async_handler and takes:

        @worker.handler(args.queue)
        async def handle_async_for(payload: Any, job: Any) -> None:
            ledger.note(payload)
            await asyncio.sleep(takes)

    elif args.async_handler:

        @worker.handler(args.queue)
        async def handle_async(payload: Any, job: Any) -> None:
            ledger.note(payload)

    elif takes:

        @worker.handler(args.queue)
        def handle_for(payload: Any, job: Any) -> None:
            ledger.note(payload)
            time.sleep(takes)

    else:

        @worker.handler(args.queue)
        def handle(payload: Any, job: Any) -> None:
            ledger.note(payload)

    # Until run() installs its own handlers: Worker.stop() before run() makes
    # run() return as soon as it starts.
    stop_requests: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        stop_requests.append(signum)
        worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    wait_for_go(args, lambda: bool(stop_requests))
    worker.run(args.dsn)


def run_raw(args: argparse.Namespace, ledger: Ledger) -> None:
    """Claim a batch, run the handler on each job in turn, delete the batch; repeat.

    When a claim comes back short, wait for a NOTIFY (or the poll interval) on
    a second connection that LISTENs from the start, so no wake-up is missed.
    """
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    wait_for_go(args, lambda: stopping)
    with (
        psycopg.connect(args.dsn, autocommit=True) as conn,
        psycopg.connect(args.dsn, autocommit=True) as listener,
    ):
        listener.execute(f"LISTEN {raw.CHANNEL}")
        while not stopping:
            jobs = raw.claim(conn, args.queue, args.batch_size)
            for _, payload in jobs:
                ledger.note(payload)
            if jobs:
                raw.finish(conn, [job_id for job_id, _ in jobs])
            if len(jobs) < args.batch_size:
                # Short waits, so that SIGTERM is acted on promptly.
                deadline = time.monotonic() + args.poll_interval
                woken = False
                while not (woken or stopping) and time.monotonic() < deadline:
                    for _ in listener.notifies(timeout=0.1, stop_after=1):
                        woken = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.workerproc")
    parser.add_argument("kind", choices=["pyqueue", "raw"])
    parser.add_argument("dsn")
    parser.add_argument("ledger", type=Path)
    parser.add_argument("--queue", default="bench")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--poll-interval", type=float, default=5.0)
    parser.add_argument("--async-handler", action="store_true")
    parser.add_argument("--handler-seconds", type=float, default=0.0)
    parser.add_argument("--prefetch", type=int, help="pyqueue: jobs held ahead (default: its own)")
    parser.add_argument("--ready", type=Path, help="file to create once ready")
    parser.add_argument("--go", type=Path, help="file whose creation starts the work")
    args = parser.parse_args(argv)
    ledger = Ledger(args.ledger)
    try:
        if args.kind == "pyqueue":
            run_pyqueue(args, ledger)
        else:
            run_raw(args, ledger)
    finally:
        ledger.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
