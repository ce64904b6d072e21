"""The commands on jobs: enqueue one, list and show them, replay, cancel, purge."""

from __future__ import annotations

import json
import time
from typing import IO

import click

from pyqueue import display
from pyqueue.cli.context import (
    UNIQUE_MODES,
    Context,
    Seconds,
    friendly_errors,
    pass_context,
    read_payload,
    seconds,
)
from pyqueue.jobs import Job
from pyqueue.visible import visible


@click.command()
@click.argument("queue_name", metavar="QUEUE")
@click.argument("payload", metavar="[JSON]", required=False)
@click.option(
    "--payload-file",
    type=click.File("r", encoding="utf-8"),
    help="Read the JSON payload from this file (- for stdin); JSON - does too.",
)
@click.option("--delay", type=Seconds(), help="Seconds before the job is due.")
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--max-attempts", type=int, help="Runs allowed in all (default: the queue's).")
@click.option("--idempotency-key", help="Return the existing job if the key is held.")
@click.option(
    "--unique-mode",
    type=UNIQUE_MODES,
    help="How long a job holds its key (default: the queue's).",
)
@click.option("--unique-period", type=Seconds(), help="Seconds, for throttle and debounce.")
@pass_context
@friendly_errors
def enqueue(
    ctx: Context,
    queue_name: str,
    payload: str | None,
    payload_file: IO[str] | None,
    delay: float | None,
    priority: int,
    max_attempts: int | None,
    idempotency_key: str | None,
    unique_mode: str | None,
    unique_period: float | None,
) -> None:
    """Add a job to QUEUE with the JSON payload (- or --payload-file: read it); print its id."""
    document = read_payload(payload, payload_file)
    with ctx.queue() as q:
        job_id = q.enqueue(
            queue_name,
            document,
            delay=seconds(delay),
            priority=priority,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
            unique_mode=unique_mode,
            unique_period=seconds(unique_period),
        )
    click.echo(job_id)


@click.command()
@click.option("--watch", is_flag=True, help="Refresh every --interval seconds until Ctrl-C.")
@click.option("--interval", type=Seconds(0.1, 86400), default=2.0, show_default=True)
@pass_context
@friendly_errors
def status(ctx: Context, watch: bool, interval: float) -> None:
    """Jobs per queue and status (the pyqueue.queue_stats view)."""
    url = ctx.database().url
    while True:
        rows = display.queue_stats(url)
        if watch:
            click.clear()
            click.echo(time.strftime("%H:%M:%S"))
        display.print_table(rows, display.STATUS_COLUMNS)
        if not watch:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return


@click.command()
@click.option("--status", "status_", help="A status of the pyqueue.job_statuses view.")
@click.option("--queue", "queue_name", help="Only this queue.")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@pass_context
@friendly_errors
def jobs(ctx: Context, status_: str | None, queue_name: str | None, limit: int) -> None:
    """List jobs, newest first."""
    with ctx.queue() as q:
        listed = q.list_jobs(status=status_, queue=queue_name, limit=limit)
    display.print_table(display.job_rows(listed), display.JOB_COLUMNS)


@click.command()
@click.argument("job_id", type=int)
@pass_context
@friendly_errors
def job(ctx: Context, job_id: int) -> None:
    """Show one job in full."""
    with ctx.queue() as q:
        found = q.get_job(job_id)
    for field in Job.__dataclass_fields__:
        value = getattr(found, field)
        if value is None:
            continue
        if field in ("payload", "result"):
            value = json.dumps(value)
        elif field == "actions":
            value = ", ".join(value) or "none"
        text = visible(str(value))
        if "\n" in text:
            click.echo(f"{field}:")
            for line in text.splitlines():
                click.echo(f"    {line}")
        else:
            click.echo(f"{field}: {text}")


@click.command()
@click.option("--queue", "queue_name", help="Only this queue.")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@pass_context
@friendly_errors
def dead(ctx: Context, queue_name: str | None, limit: int) -> None:
    """List dead-lettered jobs, newest first."""
    with ctx.queue() as q:
        dead_jobs = q.list_dead(queue=queue_name, limit=limit)
    display.print_table(display.dead_rows(dead_jobs), display.DEAD_COLUMNS)


@click.command()
@click.argument("job_id", type=int)
@pass_context
@friendly_errors
def retry(ctx: Context, job_id: int) -> None:
    """Replay dead-lettered job JOB_ID as a new job; print the new id."""
    with ctx.queue() as q:
        click.echo(q.retry_dead(job_id))


@click.command()
@click.argument("job_id", type=int)
@pass_context
@friendly_errors
def cancel(ctx: Context, job_id: int) -> None:
    """Cancel a pending or running job."""
    with ctx.queue() as q:
        if q.cancel(job_id):
            click.echo(f"job {job_id} cancelled")
        else:
            click.echo(f"job {job_id} had already finished ({q.get_job(job_id).status})")


@click.command()
@click.option("--older-than", type=Seconds(), help="Seconds; default: each queue's retention.")
@click.option("--queue", "queue_name", help="Only this queue.")
@pass_context
@friendly_errors
def purge(ctx: Context, older_than: float | None, queue_name: str | None) -> None:
    """Delete finished jobs past their retention."""
    with ctx.queue() as q:
        click.echo(f"purged {q.purge(older_than=seconds(older_than), queue=queue_name)} job(s)")
