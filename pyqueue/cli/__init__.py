"""The `pyqueue` command line: migrate, run workers, enqueue and inspect jobs.

Without DATABASE_URL (or --database-url) every command uses the private local
server, started on first use and migrated automatically. Errors are one line on
stderr and exit status 1; usage errors are one line too, and exit 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pyqueue.cli import housekeeping, jobs, queues, running
from pyqueue.cli.context import Context, Seconds
from pyqueue.localserver import default_data_dir


class OneLineErrors(click.Group):
    """The `pyqueue` group, whose usage errors are one line on stderr, not a usage block.

    A script reading stderr, or a person scanning a log, gets the message
    itself; `--help` still shows the usage.
    """

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.exceptions.NoArgsIsHelpError as error:
            error.show()  # a bare `pyqueue` or `pyqueue schedule`: the help is the answer
            sys.exit(error.exit_code)
        except click.UsageError as error:
            where = error.ctx.command_path if error.ctx is not None else "pyqueue"
            message = " ".join(error.format_message().split())
            click.echo(f"pyqueue: error: {message} (see {where} --help)", err=True)
            sys.exit(error.exit_code)
        except click.ClickException as error:
            click.echo(f"pyqueue: error: {' '.join(error.format_message().split())}", err=True)
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo("pyqueue: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=OneLineErrors)
@click.option(
    "--database-url",
    envvar="DATABASE_URL",
    help="PostgreSQL URL; default: $DATABASE_URL, else the private local server.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    help=f"Folder of the private server (default {default_data_dir()}).",
)
@click.option(
    "--connect-timeout",
    envvar="PYQUEUE_CONNECT_TIMEOUT",
    type=Seconds(1, 3600),
    help="Seconds a connection attempt may take (default: the URL's, else "
    "$PGCONNECT_TIMEOUT, else 5).",
)
@click.pass_context
def main(
    ctx: click.Context,
    database_url: str | None,
    data_dir: Path | None,
    connect_timeout: float | None,
) -> None:
    """pyqueue: a durable job queue that lives inside PostgreSQL.

    The URL may be any libpq connection string: several hosts with
    target_session_attrs=read-write, service=NAME, or settings left to PG*
    variables.
    """
    ctx.obj = Context(database_url, data_dir, connect_timeout)


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
    housekeeping.metrics,
    running.demo,
    running.server,
    running.dashboard,
):
    main.add_command(command)

__all__ = ["main"]
