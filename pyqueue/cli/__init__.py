"""The `pyqueue` command line: migrate, run workers, enqueue and inspect jobs.

Without DATABASE_URL (or --database-url) every command uses the private local
server, started on first use and migrated automatically. Errors are one line on
stderr and exit status 1; usage errors exit 2.
"""

from __future__ import annotations

from pathlib import Path

import click

from pyqueue.cli import housekeeping, jobs, queues, running
from pyqueue.cli.context import Context
from pyqueue.localserver import default_base_dir


@click.group()
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    help="PostgreSQL URL; default: $DATABASE_URL, else the private local server.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help=f"Folder of the private server (default {default_base_dir()}).",
)
@click.pass_context
def main(ctx: click.Context, database_url: str | None, data_dir: Path | None) -> None:
    """pyqueue: a durable job queue that lives inside PostgreSQL."""
    ctx.obj = Context(database_url, data_dir)


for command in (
    running.migrate,
    running.worker,
    jobs.enqueue,
    jobs.status,
    jobs.jobs,
    jobs.job,
    jobs.dead,
    jobs.retry,
    jobs.cancel,
    jobs.purge,
    queues.pause,
    queues.resume,
    queues.limit,
    housekeeping.maintain,
    housekeeping.schedule,
    running.demo,
    running.server,
    running.dashboard,
):
    main.add_command(command)

__all__ = ["main"]
