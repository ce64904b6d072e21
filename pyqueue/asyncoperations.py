"""Operator calls of `AsyncQueue`: the asyncio twins of operations.py's, on calls.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg

from pyqueue import calls, queries
from pyqueue.asyncpool import AsyncCallConnection
from pyqueue.jobs import Schedule
from pyqueue.typed import Payload


class AsyncOperations:
    """Queue settings, purge, maintenance and schedules; AsyncQueue supplies the connections."""

    async def _connection(self, conn: psycopg.AsyncConnection[Any] | None) -> AsyncCallConnection:
        raise NotImplementedError

    async def _one(self, call: calls.Call) -> Any:
        """The first column of the call's one row."""
        async with await self._connection(None) as c:
            row = await (await c.execute(*call)).fetchone()
        assert row is not None
        return row[0]

    async def purge(self, *, older_than: timedelta | None = None, queue: str | None = None) -> int:
        """Delete finished jobs past retention (or older_than); return how many."""
        return int(await self._one(calls.purge(older_than, queue)))

    async def configure_queue(
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
        """Set a queue's defaults ('*' for every queue without its own); None keeps one."""
        await self._one(
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
            )
        )

    async def pause_queue(self, queue: str) -> datetime:
        """Stop claims of a queue (jobs are still accepted); return since when."""
        since: datetime = await self._one(calls.pause_queue(queue))
        return since

    async def resume_queue(self, queue: str) -> bool:
        """Let claims take a paused queue's jobs again; False if it was not paused."""
        return bool(await self._one(calls.resume_queue(queue)))

    async def maintain(self, *, max_rows: int = 10000) -> dict[str, Any]:
        """One maintenance pass now (see `pyqueue.maintain`); returns what it did."""
        result: dict[str, Any] = await self._one(calls.maintain(max_rows))
        return result

    async def schedule(
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
        """Create or replace the cron schedule `name`; return its next tick."""
        next_run: datetime = await self._one(
            calls.schedule(name, cron, queue, payload, tz, priority, max_attempts)
        )
        return next_run

    async def unschedule(self, name: str) -> bool:
        """Remove the schedule `name`; False when there was none."""
        return bool(await self._one(calls.unschedule(name)))

    async def schedules(self) -> list[Schedule]:
        """Every schedule, by name, with its next tick and last run."""
        async with await self._connection(None) as c:
            cursor = c.cursor(row_factory=queries.SCHEDULE_ROW)
            return await (await cursor.execute(*calls.schedules())).fetchall()
