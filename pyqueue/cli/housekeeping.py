"""The commands that keep a queue running unattended: maintain, and cron schedules."""

from __future__ import annotations

import click

from pyqueue.cli.context import Context, friendly_errors, parse_json, pass_context
from pyqueue.display import print_table

# Passes at most, one after another, while a backlog of expired rows lasts.
MAX_PASSES = 1000


@click.command()
@click.option("--max-rows", type=click.IntRange(1, 1000000), default=10000, show_default=True,
              help="Jobs (and dead letters) deleted a pass at most.")  # fmt: skip
@pass_context
@friendly_errors
def maintain(ctx: Context, max_rows: int) -> None:
    """Housekeeping now, as workers do it on their own: passes until none is left to do."""
    totals = {"recovered": 0, "fired": 0, "purged": 0, "dead_purged": 0}
    with ctx.queue() as q:
        for _ in range(MAX_PASSES):
            result = q.maintain(max_rows=max_rows)
            if not result["ran"]:
                raise click.ClickException(f"no pass: {result['reason']}")
            for key in totals:
                totals[key] += result[key]
            if not result["more"]:
                break
    click.echo(", ".join(f"{key.replace('_', ' ')} {value}" for key, value in totals.items()))


@click.group()
def schedule() -> None:
    """Cron schedules: a job on a queue at every tick."""


@schedule.command("add")
@click.argument("name")
@click.argument("cron")
@click.argument("queue")
@click.argument("payload", default="{}")
@click.option("--tz", default="UTC", show_default=True, help="Zone the cron is read in.")
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--max-attempts", type=int, help="Default: the queue's.")
@pass_context
@friendly_errors
def add(
    ctx: Context,
    name: str,
    cron: str,
    queue: str,
    payload: str,
    tz: str,
    priority: int,
    max_attempts: int | None,
) -> None:
    """Create or replace schedule NAME: PAYLOAD (JSON) on QUEUE at every tick of CRON."""
    document = parse_json(payload, "PAYLOAD")
    with ctx.queue() as q:
        next_run = q.schedule(
            name, cron, queue, document, tz=tz, priority=priority, max_attempts=max_attempts
        )
    click.echo(f"schedule {name}: next run {next_run.isoformat()}")


@schedule.command("list")
@pass_context
@friendly_errors
def list_schedules(ctx: Context) -> None:
    """Every schedule with its next tick and last run."""
    with ctx.queue() as q:
        found = q.schedules()
    print_table(
        [
            {
                "name": s.name,
                "cron": s.cron,
                "tz": s.tz,
                "queue": s.queue,
                "next_run_at": s.next_run_at.isoformat(timespec="seconds"),
                "last_run_at": s.last_run_at.isoformat(timespec="seconds") if s.last_run_at else "",
                "last_job_id": s.last_job_id or "",
            }
            for s in found
        ],
        ["name", "cron", "tz", "queue", "next_run_at", "last_run_at", "last_job_id"],
    )


@schedule.command("remove")
@click.argument("name")
@pass_context
@friendly_errors
def remove(ctx: Context, name: str) -> None:
    """Remove schedule NAME (the jobs it made stay)."""
    with ctx.queue() as q:
        if not q.unschedule(name):
            raise click.ClickException(f"no schedule named {name!r}")
    click.echo(f"schedule {name} removed")


@click.command()
@pass_context
@friendly_errors
def metrics(ctx: Context) -> None:
    """Print every queue's figures in the Prometheus text format (pyqueue.queue_metrics)."""
    from pyqueue.metrics import metrics_text

    click.echo(metrics_text(ctx.database().url), nl=False)
