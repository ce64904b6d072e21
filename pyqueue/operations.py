"""Operator calls of `Queue`: queue settings, purge, maintenance and cron schedules.

A base class of Queue, apart so that each file and class stays short. Like
Queue's own methods, each is one call of a SQL function in schema `pyqueue`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from pyqueue import queries
from pyqueue.jobs import Schedule
from pyqueue.pool import CallConnection
from pyqueue.values import sql_int, to_json


class Operations:
    """Queue settings, purge, maintenance and schedules; Queue supplies the connections."""

    def _connection(self, conn: psycopg.Connection[Any] | None) -> CallConnection:
        raise NotImplementedError

    def purge(self, *, older_than: timedelta | None = None, queue: str | None = None) -> int:
        """Delete finished jobs past retention (or older_than); return how many."""
        with self._connection(None) as c:
            row = c.execute(queries.PURGE, [older_than, queue]).fetchone()
        assert row is not None
        return int(row[0])

    def configure_queue(
        self,
        queue: str,
        *,
        max_attempts: int | None = None,
        backoff_base: timedelta | None = None,
        backoff_max: timedelta | None = None,
        retention: timedelta | None = None,
        max_payload_bytes: int | None = None,
        timeout: timedelta | None = None,
        dead_retention: timedelta | None = None,
        concurrency: int | None = None,
        rate_limit: int | None = None,
        rate_period: timedelta | None = None,
        unique_mode: str | None = None,
        unique_period: timedelta | None = None,
    ) -> None:
        """Set a queue's defaults ('*' for every queue without its own); None keeps one.

        concurrency, rate_limit and rate_period are fleet-wide limits of one
        queue (0 removes a limit); unique_mode and unique_period are the
        queue's defaults for enqueue. See the README's "Flow control".
        """
        with self._connection(None) as c:
            c.execute(
                queries.CONFIGURE_QUEUE,
                [
                    queue,
                    sql_int("max_attempts", max_attempts),
                    backoff_base,
                    backoff_max,
                    retention,
                    sql_int("max_payload_bytes", max_payload_bytes),
                    timeout,
                    dead_retention,
                    sql_int("concurrency", concurrency),
                    sql_int("rate_limit", rate_limit),
                    rate_period,
                    unique_mode,
                    unique_period,
                ],
            )

    def pause_queue(self, queue: str) -> datetime:
        """Stop claims of a queue (jobs are still accepted); return since when."""
        with self._connection(None) as c:
            row = c.execute(queries.PAUSE_QUEUE, [queue]).fetchone()
        assert row is not None
        since: datetime = row[0]
        return since

    def resume_queue(self, queue: str) -> bool:
        """Let claims take a paused queue's jobs again; False if it was not paused."""
        with self._connection(None) as c:
            row = c.execute(queries.RESUME_QUEUE, [queue]).fetchone()
        assert row is not None
        return bool(row[0])

    def maintain(self, *, max_rows: int = 10000) -> dict[str, Any]:
        """One maintenance pass now (see `pyqueue.maintain`); returns what it did."""
        with self._connection(None) as c:
            row = c.execute(queries.MAINTAIN, [sql_int("max_rows", max_rows)]).fetchone()
        assert row is not None
        result: dict[str, Any] = row[0]
        return result

    def schedule(
        self,
        name: str,
        cron: str,
        queue: str,
        payload: Any = None,
        *,
        tz: str = "UTC",
        priority: int = 0,
        max_attempts: int | None = None,
    ) -> datetime:
        """Create or replace the cron schedule `name`; return its next tick.

        Each tick of `cron` (five fields, or @hourly and the like, read in `tz`)
        enqueues `payload` ({} by default) on `queue`.
        """
        document = to_json({} if payload is None else payload)
        params = [name, cron, queue, document, tz, sql_int("priority", priority),
                  sql_int("max_attempts", max_attempts)]  # fmt: skip
        with self._connection(None) as c:
            row = c.execute(queries.SCHEDULE, params).fetchone()
        assert row is not None
        next_run: datetime = row[0]
        return next_run

    def unschedule(self, name: str) -> bool:
        """Remove the schedule `name`; False when there was none."""
        with self._connection(None) as c:
            row = c.execute(queries.UNSCHEDULE, [name]).fetchone()
        assert row is not None
        return bool(row[0])

    def schedules(self) -> list[Schedule]:
        """Every schedule, by name, with its next tick and last run."""
        with self._connection(None) as c:
            return c.cursor(row_factory=queries.SCHEDULE_ROW).execute(queries.SCHEDULES).fetchall()
