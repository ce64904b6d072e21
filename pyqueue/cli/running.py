"""The commands that run something: migrate, a worker, the demo, the dashboard, the server."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import click

from pyqueue import schema
from pyqueue.cli.context import Context, Seconds, friendly_errors, pass_context
from pyqueue.errors import first_line
from pyqueue.localserver import LocalServer, default_data_dir

# Shared by the commands that can bring the schema up to date before they start.
migrate_option = click.option(
    "--migrate/--no-migrate",
    "apply_migrations",
    default=False,
    help="Apply pending migrations first (always on for the private server).",
)


@click.command()
@pass_context
@friendly_errors
def migrate(ctx: Context) -> None:
    """Bring the database to the current pyqueue schema."""
    database = ctx.resolved()
    applied = schema.migrate(database.url)
    click.echo(f"applied {applied} migration(s); schema version {schema.version_at(database.url)}")


@click.command()
@click.argument("target", metavar="MODULE:OBJECT")
@click.option("--concurrency", type=click.IntRange(1, 1000), help="Handlers run at once.")
@click.option("--batch-size", type=click.IntRange(1, 10000), help="Jobs claimed per call.")
@click.option(
    "--prefetch",
    type=click.IntRange(0, 10000),
    help="Jobs held ahead of the handlers (default: the batch size).",
)
@click.option("--queues", help="Comma-separated queues to work (default: all with handlers).")
@click.option("--poll-interval", type=Seconds(0.01, 3600), help="Seconds between polls.")
@click.option(
    "--maintenance-interval",
    type=Seconds(0.01, 86400),
    help="Seconds between maintenance passes (default 10), shared by the fleet.",
)
@click.option(
    "--maintenance/--no-maintenance",
    default=True,
    help="Run maintenance passes (default on); off leaves them to `pyqueue maintain`.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve this worker process's Prometheus metrics on this port (/metrics).",
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port."
)
@migrate_option
@pass_context
@friendly_errors
def worker(
    ctx: Context,
    target: str,
    concurrency: int | None,
    batch_size: int | None,
    prefetch: int | None,
    queues: str | None,
    poll_interval: float | None,
    maintenance_interval: float | None,
    maintenance: bool,
    metrics_port: int | None,
    metrics_host: str,
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
    except Exception as error:
        raise click.BadParameter(
            f"cannot load {target}: {type(error).__name__}: {first_line(error)}"
        ) from None
    if not isinstance(found, Worker):
        raise click.BadParameter(f"{target} is a {type(found).__name__}, not a pyqueue.Worker")
    found.configure(
        concurrency=concurrency,
        batch_size=batch_size,
        prefetch=prefetch,
        poll_interval=poll_interval,
        queues=[q.strip() for q in queues.split(",") if q.strip()] if queues else None,
        maintenance_interval=maintenance_interval,
        maintenance=maintenance,
    )
    if metrics_port is not None:
        found.serve_metrics(metrics_port, metrics_host)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    found.run(ctx.database().url, migrate=apply_migrations)


@click.command()
@click.pass_context
@friendly_errors
def demo(click_ctx: click.Context) -> None:
    """Run a worker on a few realistic jobs and show their progress live."""
    from pyqueue.demo import run_demo

    ctx = click_ctx.ensure_object(Context)
    run_demo(ctx.database(migrate=True).url)


@click.group()
def server() -> None:
    """Manage the private local PostgreSQL server."""


def private_server(ctx: click.Context) -> LocalServer:
    options = ctx.find_object(Context)
    data_dir = options.data_dir if options is not None else None
    return LocalServer(data_dir or default_data_dir())


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


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--token",
    envvar="PYQUEUE_DASHBOARD_TOKEN",
    help="Require this token (default: a random one, printed once as a login URL). "
    "On the command line it shows in `ps`: prefer $PYQUEUE_DASHBOARD_TOKEN or --token-file.",
)
@click.option(
    "--token-file",
    envvar="PYQUEUE_DASHBOARD_TOKEN_FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read the token from the first line of this file.",
)
@click.option(
    "--basic-auth",
    envvar="PYQUEUE_DASHBOARD_BASIC_AUTH",
    metavar="USER:PASSWORD",
    help="Require these basic-auth credentials (instead of the random token).",
)
@click.option(
    "--trusted-proxy",
    envvar="PYQUEUE_DASHBOARD_TRUSTED_PROXY",
    metavar="ADDRESS",
    help="Believe X-Forwarded-For/-Proto from this reverse proxy's address only.",
)
@migrate_option
@pass_context
@friendly_errors
def dashboard(
    ctx: Context,
    host: str,
    port: int,
    token: str | None,
    token_file: Path | None,
    basic_auth: str | None,
    trusted_proxy: str | None,
    apply_migrations: bool,
) -> None:
    """Serve the web dashboard and its JSON API, behind a token or basic auth."""
    from pyqueue.dashboard import credentials, login_url, serve

    creds = credentials(token, basic_auth, token_file)  # before a server starts for nothing
    shown_host = f"[{host}]" if ":" in host else host
    base = f"http://{shown_host}:{port}/"
    url = ctx.database(migrate=apply_migrations).url
    if creds.generated:
        click.echo(f"pyqueue dashboard: log in at {login_url(base, creds)}", err=True)
    else:
        click.echo(f"pyqueue dashboard on {base} (log in with your token or password)", err=True)
    click.echo("Ctrl-C stops it.", err=True)
    serve(url, host=host, port=port, creds=creds, trusted_proxy=trusted_proxy)
