"""What the dashboard reads, each through a pyqueue view or SQL function.

Job rows come from `pyqueue.Queue` (get_job, list_jobs); the monitoring views
that Queue has no method for (queue_stats, throughput, dead_letters, and
all_jobs for the idempotency-key search) are read here. Everything is turned
into plain JSON-ready dicts, which both the pages and the JSON API show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from pyqueue import queries
from pyqueue.client import Queue
from pyqueue.jobs import Job

# The words a person reads for each status of the all_jobs view.
STATE_WORDS = {
    "pending": "queued",
    "running": "running",
    "completed": "done",
    "cancelled": "cancelled",
    "dead": "failed",
}
STATUSES = tuple(STATE_WORDS)
PAGE_SIZE = 50
# list_jobs takes at most this many rows; pages past it are out of reach.
MAX_LISTED = 100_000


def plain(value: Any) -> Any:
    """A database value as JSON: timestamps as ISO 8601, intervals as seconds."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def job_dict(job: Job) -> dict[str, Any]:
    """A job for the API and pages: every column, plus `state`, the status in words."""
    fields = {name: plain(value) for name, value in asdict(job).items()}
    return {**fields, "state": STATE_WORDS.get(job.status, job.status)}


class Reads:
    """The dashboard's database access: a Queue plus a small pool for the views."""

    def __init__(self, conninfo: str) -> None:
        self.queue = Queue(conninfo)
        self._pool = ConnectionPool(
            conninfo, min_size=0, max_size=4, open=True, name="pyqueue-dashboard"
        )

    def close(self) -> None:
        self._pool.close()
        self.queue.close()

    def _rows(self, query: str, params: Sequence[Any] | Mapping[str, Any]) -> list[dict[str, Any]]:
        with self._pool.connection() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(query, params).fetchall()
        return [{k: plain(v) for k, v in row.items()} for row in rows]

    def queue_stats(self) -> list[dict[str, Any]]:
        return self._rows(queries.QUEUE_STATS, [])

    def queue_metrics(self) -> list[dict[str, Any]]:
        return self._rows(queries.QUEUE_METRICS, [])

    def throughput(self, queue: str | None = None) -> list[dict[str, Any]]:
        """Jobs completed and failed in each of the last 60 minutes, zeros included."""
        return self._rows(queries.THROUGHPUT_LAST_HOUR, {"queue": queue})

    def dead_letters(self, page: int) -> tuple[list[dict[str, Any]], bool]:
        """One page of the dead_letters view, newest first, and whether more follow."""
        rows = self._rows(queries.DEAD_LETTERS_PAGE, [PAGE_SIZE + 1, (page - 1) * PAGE_SIZE])
        return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE

    def jobs(
        self, *, status: str | None, queue: str | None, page: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of list_jobs, newest first, and whether more follow.

        list_jobs has no offset, so this asks for every row up to the end of the
        page and keeps the last ones.
        """
        start = (page - 1) * PAGE_SIZE
        wanted = min(start + PAGE_SIZE + 1, MAX_LISTED)
        jobs = self.queue.list_jobs(status=status, queue=queue, limit=wanted)
        shown = [job_dict(j) for j in jobs[start : start + PAGE_SIZE]]
        return shown, len(jobs) > start + PAGE_SIZE

    def job(self, job_id: int) -> dict[str, Any]:
        return job_dict(self.queue.get_job(job_id))

    def schedules(self) -> list[dict[str, Any]]:
        """Every cron schedule, by name, with its next tick and last run."""
        return [{k: plain(v) for k, v in asdict(s).items()} for s in self.queue.schedules()]

    def jobs_with_key(self, key: str) -> list[dict[str, Any]]:
        """Jobs (live or dead) whose idempotency key is `key`, newest first."""
        with self._pool.connection() as conn:
            jobs = (
                conn.cursor(row_factory=queries.JOB_ROW)
                .execute(queries.JOBS_WITH_KEY, [key, PAGE_SIZE])
                .fetchall()
            )
        return [job_dict(j) for j in jobs]
