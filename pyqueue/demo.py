"""`pyqueue demo`: a worker at work on a few realistic jobs, shown live.

It enqueues a CSV import that reports progress, an e-mail whose server is busy
for two attempts, a webhook that always fails and ends dead-lettered, and an
export enqueued twice under one idempotency key (so it runs once). A worker in
a background thread runs them while the terminal shows their progress; the demo
ends with the status table and the dead letters.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import click

from pyqueue import display
from pyqueue.client import Queue
from pyqueue.jobs import Job
from pyqueue.worker import JobContext, Worker

BAR_WIDTH = 20


class SmtpBusy(Exception):
    """The pretend mail server asks us to come back later."""


def build_worker() -> Worker:
    worker = Worker(concurrency=4, batch_size=4, poll_interval=1.0, name="demo-worker")

    @worker.handler("demo.csv_import")
    def import_csv(payload: dict[str, Any], job: JobContext) -> dict[str, Any]:
        rows = int(payload["rows"])
        for done in range(0, rows + 1, rows // 10):
            job.progress(100 * done // rows, f"{done} of {rows} rows")
            time.sleep(0.3)
        return {"imported": rows, "file": payload["file"]}

    @worker.handler("demo.email")
    def send_email(payload: dict[str, Any], job: JobContext) -> dict[str, Any]:
        if job.attempt < 3:
            raise SmtpBusy(f"421 mail server busy (attempt {job.attempt}), try again later")
        return {"sent_to": payload["to"]}

    @worker.handler("demo.webhook")
    def call_webhook(payload: dict[str, Any], job: JobContext) -> None:
        raise ConnectionRefusedError(f"POST {payload['url']}: connection refused")

    @worker.handler("demo.export")
    def export_report(payload: dict[str, Any], job: JobContext) -> dict[str, Any]:
        for step in range(5):
            job.progress(20 * (step + 1), "writing report")
            time.sleep(0.2)
        return {"report": f"{payload['report']}.pdf"}

    return worker


def enqueue_jobs(queue: Queue) -> list[int]:
    """The demo's jobs; the export twice under one key, so it appears once."""
    for name in ("demo.email", "demo.webhook"):
        queue.configure_queue(name, backoff_base=timedelta(seconds=0.5), max_attempts=3)
    run = uuid.uuid4().hex[:8]
    export_key = f"demo-export-{run}"
    ids = [
        queue.enqueue("demo.csv_import", {"file": "customers.csv", "rows": 5000}),
        queue.enqueue("demo.email", {"to": "ada@example.com", "template": "welcome"}),
        queue.enqueue("demo.webhook", {"url": "https://hooks.invalid/order-paid"}),
        queue.enqueue("demo.export", {"report": "monthly-sales"}, idempotency_key=export_key),
        queue.enqueue("demo.export", {"report": "monthly-sales"}, idempotency_key=export_key),
    ]
    return list(dict.fromkeys(ids))  # the duplicate export returned the same id


def progress_line(job: Job) -> str:
    percent = 100 if job.status == "completed" else (job.progress or 0)
    filled = BAR_WIDTH * percent // 100
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    note = job.progress_message or ""
    if job.status == "pending" and job.error:
        note = f"retrying after: {job.error}"
    elif job.status == "dead":
        note = f"dead-lettered: {job.error}"
    return (
        f"  #{job.id:<5} {job.queue:<16} {job.status:<9} [{bar}] {percent:3d}%  "
        f"attempt {job.attempt}/{job.max_attempts}  {note}"
    )[:150]


def show_progress(queue: Queue, ids: Sequence[int], timeout: float) -> None:
    """Redraw one line per job until all have finished (or `timeout` seconds)."""
    interactive = sys.stdout.isatty()
    deadline = time.monotonic() + timeout
    shown: list[str] = []
    while True:
        jobs = [queue.get_job(i) for i in ids]
        lines = [progress_line(j) for j in jobs]
        if interactive:
            if shown:
                click.echo(f"\x1b[{len(shown)}F", nl=False)  # back to the first line
            for line in lines:
                click.echo(f"\x1b[2K{line}")
        else:
            for before, line in zip(shown or [""] * len(lines), lines, strict=True):
                if line != before:
                    click.echo(line)
        shown = lines
        if all(j.finished for j in jobs) or time.monotonic() > deadline:
            return
        time.sleep(0.2)


def run_demo(url: str) -> None:
    """Enqueue the demo's jobs, run a worker on them, show them live, then the tables."""
    # The live display already tells each failure and retry: keep the worker's
    # warnings from breaking its lines.
    logging.getLogger("pyqueue.worker").setLevel(logging.ERROR)
    worker = build_worker()
    thread = threading.Thread(
        target=worker.run, args=(url,), kwargs={"install_signal_handlers": False}, daemon=True
    )
    with Queue(url) as queue:
        click.echo(f"pyqueue demo on {display.without_password(url)}\n")
        ids = enqueue_jobs(queue)
        click.echo(f"enqueued jobs {', '.join(map(str, ids))} (the export twice, one key)\n")
        thread.start()
        try:
            show_progress(queue, ids, timeout=50)
        finally:
            worker.stop()
            thread.join(timeout=35)
        dead_letters = queue.list_dead(limit=5)
    click.echo("\nqueues:")
    display.print_table(display.queue_stats(url), display.STATUS_COLUMNS)
    click.echo("\ndead letters:")
    display.print_table(display.dead_rows(dead_letters), display.DEAD_COLUMNS)
