"""The `pyqueue` command line: migrate, run workers, enqueue and inspect jobs.

Without DATABASE_URL (or --database-url) every command uses the private local
server, started on first use and migrated automatically. Errors are one line on
stderr and exit status 1; usage errors exit 2.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
import psycopg
from psycopg.rows import dict_row

from pyqueue import queries, schema
from pyqueue.client import Queue
from pyqueue.database import Database, resolve
from pyqueue.errors import PyqueueError, first_line
from pyqueue.jobs import Job
from pyqueue.localserver import LocalServer, default_base_dir

P = ParamSpec("P")
R = TypeVar("R")


class Context:
    """What the group options chose; the database is resolved on first use."""

    def __init__(self, url: str | None, data_dir: Path | None) -> None:
        self.url = url
        self.data_dir = data_dir
        self._database: Database | None = None

    def database(self, *, migrate: bool = False) -> Database:
        if self._database is None:
            self._database = resolve(self.url, self.data_dir)
            # The private server is ours: give it the schema without being asked.
            if migrate or self._database.private:
                schema.migrate(self._database.url)
        return self._database

    def queue(self) -> Queue:
        return Queue(self.database().url)


def friendly_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Report pyqueue and connection errors as one line on stderr, exit 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (PyqueueError, psycopg.Error) as error:
            click.echo(f"pyqueue: error: {first_line(error)}", err=True)
            sys.exit(1)

    return wrapper


def seconds(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Rows as a plain aligned text table, as psql would show them."""
    cells = [[("" if r.get(c) is None else str(r[c])) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        click.echo("(none)")


def fetch_dicts(url: str, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


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


pass_context = click.make_pass_decorator(Context)


@main.command()
@pass_context
@friendly_errors
def migrate(ctx: Context) -> None:
    """Bring the database to the current pyqueue schema."""
    database = resolve(ctx.url, ctx.data_dir)
    applied = schema.migrate(database.url)
    click.echo(f"applied {applied} migration(s); schema version {schema.SCHEMA_VERSION}")


@main.command()
@click.argument("target", metavar="MODULE:OBJECT")
@click.option("--concurrency", type=click.IntRange(1, 1000), help="Handlers run at once.")
@click.option("--batch-size", type=click.IntRange(1, 10000), help="Jobs claimed per call.")
@click.option("--queues", help="Comma-separated queues to work (default: all with handlers).")
@click.option("--poll-interval", type=click.FloatRange(0.01), help="Seconds between polls.")
@click.option(
    "--migrate/--no-migrate",
    "apply_migrations",
    default=False,
    help="Apply pending migrations first (always on for the private server).",
)
@pass_context
@friendly_errors
def worker(
    ctx: Context,
    target: str,
    concurrency: int | None,
    batch_size: int | None,
    queues: str | None,
    poll_interval: float | None,
    apply_migrations: bool,
) -> None:
    """Run the Worker object found at MODULE:OBJECT until SIGTERM or SIGINT."""
    from pyqueue.worker import Worker

    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise click.BadParameter("expected MODULE:OBJECT, e.g. myapp.jobs:worker")
    sys.path.insert(0, ".")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise click.BadParameter(f"cannot load {target}: {error}") from None
    if not isinstance(found, Worker):
        raise click.BadParameter(f"{target} is a {type(found).__name__}, not a pyqueue.Worker")
    found.configure(
        concurrency=concurrency,
        batch_size=batch_size,
        poll_interval=poll_interval,
        queues=[q.strip() for q in queues.split(",") if q.strip()] if queues else None,
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    found.run(ctx.database(migrate=apply_migrations).url)


@main.command()
@click.argument("queue_name", metavar="QUEUE")
@click.argument("payload", metavar="JSON")
@click.option("--delay", type=float, help="Seconds before the job is due.")
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--max-attempts", type=int, help="Runs allowed in all (default: the queue's).")
@click.option("--idempotency-key", help="Return the existing job if the key is known.")
@pass_context
@friendly_errors
def enqueue(
    ctx: Context,
    queue_name: str,
    payload: str,
    delay: float | None,
    priority: int,
    max_attempts: int | None,
    idempotency_key: str | None,
) -> None:
    """Add a job to QUEUE with the JSON payload; print its id."""
    try:
        document = json.loads(payload)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"payload is not JSON: {error}", param_hint="JSON") from None
    with ctx.queue() as q:
        job_id = q.enqueue(
            queue_name,
            document,
            delay=seconds(delay),
            priority=priority,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
        )
    click.echo(job_id)


STATUS_COLUMNS = ["queue", "pending", "due", "retrying", "running", "completed", "cancelled",
                  "dead", "oldest_due_age"]  # fmt: skip


@main.command()
@click.option("--watch", is_flag=True, help="Refresh every --interval seconds until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(0.1), default=2.0, show_default=True)
@pass_context
@friendly_errors
def status(ctx: Context, watch: bool, interval: float) -> None:
    """Jobs per queue and status (the pyqueue.queue_stats view)."""
    url = ctx.database().url
    while True:
        rows = fetch_dicts(url, queries.QUEUE_STATS)
        if watch:
            click.clear()
            click.echo(time.strftime("%H:%M:%S"))
        print_table(rows, STATUS_COLUMNS)
        if not watch:
            return
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            return


JOB_COLUMNS = ["id", "queue", "status", "attempt", "max_attempts", "run_at", "error"]


def job_rows(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    return [
        {
            **{c: getattr(j, c) for c in JOB_COLUMNS},
            "run_at": j.run_at.strftime("%Y-%m-%d %H:%M:%S") if j.run_at else None,
            "error": first_line(j.error)[:60] if j.error else None,
        }
        for j in jobs
    ]


@main.command()
@click.option("--status", "status_", help="pending, running, completed, cancelled or dead.")
@click.option("--queue", "queue_name", help="Only this queue.")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@pass_context
@friendly_errors
def jobs(ctx: Context, status_: str | None, queue_name: str | None, limit: int) -> None:
    """List jobs, newest first."""
    with ctx.queue() as q:
        print_table(job_rows(q.list_jobs(status=status_, queue=queue_name, limit=limit)),
                    JOB_COLUMNS)  # fmt: skip


@main.command()
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
        text = str(value)
        if "\n" in text:
            click.echo(f"{field}:")
            for line in text.splitlines():
                click.echo(f"    {line}")
        else:
            click.echo(f"{field}: {text}")


@main.command()
@click.option("--queue", "queue_name", help="Only this queue.")
@click.option("--limit", type=click.IntRange(1, 100000), default=50, show_default=True)
@pass_context
@friendly_errors
def dead(ctx: Context, queue_name: str | None, limit: int) -> None:
    """List dead-lettered jobs, newest first."""
    with ctx.queue() as q:
        dead_jobs = q.list_dead(queue=queue_name, limit=limit)
    rows = [
        {**row, "retried_as": j.retried_as}
        for j, row in zip(dead_jobs, job_rows(dead_jobs), strict=True)
    ]
    print_table(rows, [*JOB_COLUMNS[:2], "attempt", "error", "retried_as"])


@main.command()
@click.argument("job_id", type=int)
@pass_context
@friendly_errors
def retry(ctx: Context, job_id: int) -> None:
    """Replay dead-lettered job JOB_ID as a new job; print the new id."""
    with ctx.queue() as q:
        click.echo(q.retry_dead(job_id))


@main.command()
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


@main.command()
@click.option("--older-than", type=float, help="Seconds; default: each queue's retention.")
@click.option("--queue", "queue_name", help="Only this queue.")
@pass_context
@friendly_errors
def purge(ctx: Context, older_than: float | None, queue_name: str | None) -> None:
    """Delete finished jobs past their retention."""
    with ctx.queue() as q:
        click.echo(f"purged {q.purge(older_than=seconds(older_than), queue=queue_name)} job(s)")


@main.command()
@click.pass_context
@friendly_errors
def demo(click_ctx: click.Context) -> None:
    """Run a worker on a few realistic jobs and show their progress live."""
    from pyqueue.demo import run_demo

    ctx = click_ctx.ensure_object(Context)
    run_demo(
        ctx.database(migrate=True).url,
        print_status=lambda: click_ctx.invoke(status),
        print_dead=lambda: click_ctx.invoke(dead, limit=5),
    )


@main.group()
def server() -> None:
    """Manage the private local PostgreSQL server."""


def private_server(ctx: click.Context) -> LocalServer:
    options = ctx.find_object(Context)
    data_dir = options.data_dir if options is not None else None
    return LocalServer(data_dir or default_base_dir())


@server.command("start")
@click.pass_context
@friendly_errors
def server_start(ctx: click.Context) -> None:
    """Start the private server (creating it if needed); print its URL."""
    click.echo(private_server(ctx).start())


@server.command("stop")
@click.pass_context
@friendly_errors
def server_stop(ctx: click.Context) -> None:
    """Stop the private server."""
    private_server(ctx).stop()
    click.echo("stopped")


@server.command("url")
@click.pass_context
@friendly_errors
def server_url(ctx: click.Context) -> None:
    """Print the URL of the running private server."""
    click.echo(private_server(ctx).url())


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--token", envvar="PYQUEUE_DASHBOARD_TOKEN", help="Require this token.")
@click.option(
    "--basic-auth",
    envvar="PYQUEUE_DASHBOARD_BASIC_AUTH",
    metavar="USER:PASSWORD",
    help="Require these basic-auth credentials.",
)
@pass_context
@friendly_errors
def dashboard(
    ctx: Context, host: str, port: int, token: str | None, basic_auth: str | None
) -> None:
    """Serve the web dashboard and its JSON API (loopback only without credentials)."""
    from pyqueue.dashboard import check_bind, credentials, serve

    creds = credentials(token, basic_auth)
    check_bind(host, creds)  # before a private server is started for nothing
    click.echo(f"pyqueue dashboard on http://{host}:{port}/ (Ctrl-C stops it)", err=True)
    serve(ctx.database().url, host=host, port=port, creds=creds)


if __name__ == "__main__":
    main()
