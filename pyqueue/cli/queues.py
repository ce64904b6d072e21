"""The commands on whole queues: pause and resume claims, set flow limits."""

from __future__ import annotations

import click

from pyqueue.cli.context import (
    UNIQUE_MODES,
    Context,
    Seconds,
    friendly_errors,
    pass_context,
    seconds,
)


@click.command()
@click.argument("queue_name", metavar="QUEUE")
@pass_context
@friendly_errors
def pause(ctx: Context, queue_name: str) -> None:
    """Stop workers claiming QUEUE's jobs; running jobs finish, enqueue goes on."""
    with ctx.queue() as q:
        since = q.pause_queue(queue_name)
    click.echo(f"queue {queue_name} paused since {since:%Y-%m-%d %H:%M:%S %Z}")


@click.command()
@click.argument("queue_name", metavar="QUEUE")
@pass_context
@friendly_errors
def resume(ctx: Context, queue_name: str) -> None:
    """Let workers claim a paused QUEUE's jobs again."""
    with ctx.queue() as q:
        was_paused = q.resume_queue(queue_name)
    click.echo(
        f"queue {queue_name} resumed" if was_paused else f"queue {queue_name} was not paused"
    )


@click.command()
@click.argument("queue_name", metavar="QUEUE")
@click.option("--concurrency", type=int, help="Jobs running at once, fleet-wide (0: no limit).")
@click.option("--rate-limit", type=int, help="Job starts per --rate-period (0: no limit).")
@click.option("--rate-period", type=Seconds(), help="Seconds: the window --rate-limit counts in.")
@click.option(
    "--unique-mode",
    type=UNIQUE_MODES,
    help="How long a job holds its idempotency key, by default.",
)
@click.option("--unique-period", type=Seconds(), help="Seconds, for throttle and debounce.")
@pass_context
@friendly_errors
def limit(
    ctx: Context,
    queue_name: str,
    concurrency: int | None,
    rate_limit: int | None,
    rate_period: float | None,
    unique_mode: str | None,
    unique_period: float | None,
) -> None:
    """Set QUEUE's flow limits and key default; options left out stay as they are."""
    with ctx.queue() as q:
        q.configure_queue(
            queue_name,
            concurrency=concurrency,
            rate_limit=rate_limit,
            rate_period=seconds(rate_period),
            unique_mode=unique_mode,
            unique_period=seconds(unique_period),
        )
    click.echo(f"queue {queue_name} configured")
