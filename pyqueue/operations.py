"""Operator calls of `Queue`: queue settings, purge, maintenance and cron schedules.

A base class of Queue, apart so that each file and class stays short. Like
Queue's own methods, each is one call of a SQL function in schema `pyqueue`,
built by calls.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from pyqueue import calls, queries
from pyqueue.jobs import Schedule
from pyqueue.pool import CallConnection
from pyqueue.typed import Payload


class Operations:
    """Queue settings, purge, maintenance and schedules; Queue supplies the connections."""

    def _connection(
        self, conn: psycopg.Connection[Any] | None, writes: str | None = None
    ) -> CallConnection:
        raise NotImplementedError

    def _one(self, call: calls.Call, writes: str | None = None) -> Any:
        """The first column of the call's one row (writes: what the call does, if it writes)."""
        with self._connection(None, writes) as c:
            row = c.execute(*call).fetchone()
        assert row is not None
        return row[0]

    def purge(self, *, older_than: timedelta | None = None, queue: str | None = None) -> int:
        """Delete finished jobs past retention (or older_than); return how many."""
        return int(self._one(calls.purge(older_than, queue), "purge"))

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
        max_result_bytes: int | None = None,
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
        self._one(
            calls.configure_queue(
                queue,
                max_attempts,
                backoff_base,
                backoff_max,
                retention,
                max_payload_bytes,
                timeout,
                dead_retention,
                max_result_bytes,
                concurrency,
                rate_limit,
                rate_period,
                unique_mode,
                unique_period,
            ),
            "configure_queue",
        )

    def pause_queue(self, queue: str) -> datetime:
        """Stop claims of a queue (jobs are still accepted); return since when."""
        since: datetime = self._one(calls.pause_queue(queue), "pause_queue")
        return since

    def resume_queue(self, queue: str) -> bool:
        """Let claims take a paused queue's jobs again; False if it was not paused."""
        return bool(self._one(calls.resume_queue(queue), "resume_queue"))

    def maintain(self, *, max_rows: int = 10000) -> dict[str, Any]:
        """One maintenance pass now (see `pyqueue.maintain`); returns what it did."""
        result: dict[str, Any] = self._one(calls.maintain(max_rows), "maintain")
        return result

    def schedule(
        self,
        name: str,
        cron: str,
        queue: str,
        payload: Payload = None,
        *,
        tz: str = "UTC",
        priority: int = 0,
        max_attempts: int | None = None,
    ) -> datetime:
        """Create or replace the cron schedule `name`; return its next tick.

        Each tick of `cron` (five fields, or @hourly and the like, read in `tz`)
        enqueues `payload` ({} by default) on `queue`.
        """
        next_run: datetime = self._one(
            calls.schedule(name, cron, queue, payload, tz, priority, max_attempts), "schedule"
        )
        return next_run

    def unschedule(self, name: str) -> bool:
        """Remove the schedule `name`; False when there was none."""
        return bool(self._one(calls.unschedule(name), "unschedule"))

    def schedules(self) -> list[Schedule]:
        """Every schedule, by name, with its next tick and last run."""
        with self._connection(None) as c:
            cursor = c.cursor(row_factory=queries.SCHEDULE_ROW)
            return cursor.execute(*calls.schedules()).fetchall()
