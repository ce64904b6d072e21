"""What the dashboard reads, each through a pyqueue view or SQL function.

A job comes from `pyqueue.Queue` (get_job); listings come from
job_summaries(), a page at a time by keyset (before_id) and without payload,
result or traceback; the monitoring views that Queue has no method for
(queue_stats, throughput, dead_letters) are read here. All of it is granted to
pyqueue_operator, so the dashboard needs no more. Everything is turned into
plain JSON-ready dicts, which both the pages and the JSON API show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from psycopg.rows import dict_row

from pyqueue import queries
from pyqueue.client import Queue
from pyqueue.jobs import Job, JobSummary
from pyqueue.pool import CallConnection, ClientPool
from pyqueue.values import sql_int

PAGE_SIZE = 50


def plain(value: Any) -> Any:
    """A database value as JSON: timestamps as ISO 8601, intervals as seconds."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


def job_dict(job: Job | JobSummary) -> dict[str, Any]:
    """A job for the API and pages: every column, its status (and actions) as SQL gives them."""
    return {name: plain(value) for name, value in asdict(job).items()}


class Reads:
    """The dashboard's database access: a Queue plus a small pool for the views."""

    def __init__(self, conninfo: str) -> None:
        self.queue = Queue(conninfo)
        self._pool = ClientPool(conninfo, max_connections=4)

    def close(self) -> None:
        self._pool.close()
        self.queue.close()

    def _rows(self, query: str, params: Sequence[Any] | Mapping[str, Any]) -> list[dict[str, Any]]:
        with CallConnection(self._pool, None) as conn:
            rows = conn.cursor(row_factory=dict_row).execute(query, params).fetchall()
        return [{k: plain(v) for k, v in row.items()} for row in rows]

    def statuses(self) -> list[dict[str, Any]]:
        """The job_statuses view: each status in lifecycle order, with its meaning."""
        return self._rows(queries.JOB_STATUSES, [])

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

    def _summaries(
        self, status: str | None, queue: str | None, before_id: int | None, key: str | None
    ) -> list[JobSummary]:
        params = [status, queue, sql_int("before_id", before_id, 64), PAGE_SIZE + 1, key]
        with CallConnection(self._pool, None) as conn:
            cursor = conn.cursor(row_factory=queries.JOB_SUMMARY_ROW)
            return cursor.execute(queries.JOB_SUMMARIES, params).fetchall()

    def jobs(
        self, *, status: str | None, queue: str | None, before_id: int | None
    ) -> tuple[list[dict[str, Any]], bool]:
        """A page of job summaries, newest first, with ids below before_id if given,
        and whether more follow (the next page starts before the last id shown)."""
        jobs = self._summaries(status, queue, before_id, None)
        return [job_dict(j) for j in jobs[:PAGE_SIZE]], len(jobs) > PAGE_SIZE

    def job(self, job_id: int) -> dict[str, Any]:
        return job_dict(self.queue.get_job(job_id))

    def schedules(self) -> list[dict[str, Any]]:
        """Every cron schedule, by name, with its next tick and last run."""
        return [{k: plain(v) for k, v in asdict(s).items()} for s in self.queue.schedules()]

    def jobs_with_key(self, key: str) -> list[dict[str, Any]]:
        """Jobs (live or dead) whose idempotency key is `key`, newest first."""
        return [job_dict(j) for j in self._summaries(None, None, None, key)[:PAGE_SIZE]]
