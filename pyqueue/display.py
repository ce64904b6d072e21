"""Tables for a terminal: what the CLI and the demo print, aligned as psql would.

Every cell goes through visible(), so a job's text cannot reorder or recolour
what the terminal shows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import click
from psycopg.rows import dict_row

from pyqueue import queries
from pyqueue.connecting import connect
from pyqueue.errors import first_line
from pyqueue.jobs import Job
from pyqueue.visible import visible

STATUS_COLUMNS = ["queue", "pending", "due", "retrying", "running", "completed", "cancelled",
                  "dead", "oldest_due_age"]  # fmt: skip
JOB_COLUMNS = ["id", "queue", "status", "attempt", "max_attempts", "run_at", "error", "actions"]
DEAD_COLUMNS = [*JOB_COLUMNS[:2], "attempt", "error", "retried_as", "actions"]


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Rows as a plain aligned text table, as psql would show them."""
    cells = [[("" if r.get(c) is None else visible(str(r[c]))) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        click.echo("(none)")


def queue_stats(url: str) -> list[dict[str, Any]]:
    """The queue_stats view's rows."""
    with connect(url) as conn:
        return conn.cursor(row_factory=dict_row).execute(queries.QUEUE_STATS).fetchall()


def job_rows(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """Jobs as JOB_COLUMNS rows: the run time to the second, the error's first line."""
    return [
        {
            **{c: getattr(j, c) for c in JOB_COLUMNS},
            "run_at": j.run_at.strftime("%Y-%m-%d %H:%M:%S") if j.run_at else None,
            "error": first_line(j.error)[:60] if j.error else None,
            "actions": ",".join(j.actions),
        }
        for j in jobs
    ]


def dead_rows(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """Dead-lettered jobs as DEAD_COLUMNS rows."""
    return [
        {**row, "retried_as": j.retried_as} for j, row in zip(jobs, job_rows(jobs), strict=True)
    ]


def without_password(url: str) -> str:
    """A connection URL fit to print: its password, if any, replaced by ***."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
