"""`AsyncQueue`: Queue's API as `async def`, for asyncio applications.

    async with AsyncQueue(url) as queue:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            await conn.execute("INSERT INTO orders ...")
            job_id = await queue.enqueue("invoices", Invoice(...), conn=conn)
        job = await queue.wait(job_id, timeout=30)

Each method runs the same statement as Queue's, built by calls.py, on a
connection of psycopg's AsyncConnectionPool, or on the caller's
AsyncConnection (inside its transaction) when one is given. Every `wait` of
one AsyncQueue shares one LISTEN connection (waiters.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg

from pyqueue import calls, queries
from pyqueue.asyncoperations import AsyncOperations
from pyqueue.asyncpool import AsyncCallConnection, async_pool
from pyqueue.client import WAIT_REREAD_SECONDS
from pyqueue.jobs import Job
from pyqueue.typed import Payload
from pyqueue.waiters import FinishedListener

AsyncConn = psycopg.AsyncConnection[Any]


class AsyncQueue(AsyncOperations):
    """An asyncio client of the pyqueue schema in the database at `conninfo`.

    Use it as `async with AsyncQueue(url) as queue:`, or call `await close()`
    when done; the pool opens at the first call.
    """

    def __init__(self, conninfo: str, *, max_connections: int = 4) -> None:
        self.conninfo = conninfo
        self._pool = async_pool(conninfo, max_connections)
        self._opened = False
        self._listener = FinishedListener(conninfo)

    async def open(self) -> None:
        if not self._opened:
            await self._pool.open()
            self._opened = True

    async def close(self) -> None:
        await self._listener.close()
        await self._pool.close()

    async def __aenter__(self) -> AsyncQueue:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _connection(self, conn: AsyncConn | None) -> AsyncCallConnection:
        if conn is None and not self._opened:
            await self.open()
        return AsyncCallConnection(self._pool, conn)

    async def enqueue(
        self,
        queue: str,
        payload: Payload,
        *,
        run_at: datetime | None = None,
        delay: timedelta | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
        timeout: timedelta | None = None,
        unique_mode: str | None = None,
        unique_period: timedelta | None = None,
        conn: AsyncConn | None = None,
    ) -> int:
        """Add a job; return its id (see Queue.enqueue)."""
        call = calls.enqueue(
            queue,
            payload,
            run_at,
            delay,
            priority,
            max_attempts,
            idempotency_key,
            timeout,
            unique_mode,
            unique_period,
        )
        async with await self._connection(conn) as c:
            row = await (await c.execute(*call)).fetchone()
        assert row is not None
        return int(row[0])

    async def enqueue_many(
        self,
        queue: str,
        payloads: Sequence[Payload],
        *,
        run_at: datetime | None = None,
        delay: timedelta | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        idempotency_keys: Sequence[str | None] | None = None,
        timeout: timedelta | None = None,
        unique_mode: str | None = None,
        unique_period: timedelta | None = None,
        conn: AsyncConn | None = None,
    ) -> list[int]:
        """Add one job per payload in one statement; return their ids in order."""
        call = calls.enqueue_many(
            queue,
            payloads,
            run_at,
            delay,
            priority,
            max_attempts,
            idempotency_keys,
            timeout,
            unique_mode,
            unique_period,
        )
        async with await self._connection(conn) as c:
            rows = await (await c.execute(*call)).fetchall()
        return [int(r[0]) for r in rows]

    async def get_job(self, job_id: int, *, conn: AsyncConn | None = None) -> Job:
        """One job by id; raises JobNotFound for an unknown id."""
        call = calls.get_job(job_id)
        async with await self._connection(conn) as c:
            cursor = c.cursor(row_factory=queries.JOB_ROW)
            job = await (await cursor.execute(*call)).fetchone()
        assert job is not None
        return job

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        queue: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[Job]:
        """Jobs newest first, optionally of one status and one queue, below before_id."""
        call = calls.list_jobs(status, queue, limit, before_id)
        async with await self._connection(None) as c:
            cursor = c.cursor(row_factory=queries.JOB_ROW)
            return await (await cursor.execute(*call)).fetchall()

    async def list_dead(self, *, queue: str | None = None, limit: int = 100) -> list[Job]:
        """Dead-lettered jobs, newest first."""
        return await self.list_jobs(status="dead", queue=queue, limit=limit)

    async def retry_dead(self, job_id: int) -> int:
        """Replay a dead-lettered job as a new pending job; return the new id."""
        return int(await self._one(calls.retry_dead(job_id)))

    async def cancel(self, job_id: int, *, conn: AsyncConn | None = None) -> bool:
        """Cancel a pending or running job; False when it had already finished."""
        async with await self._connection(conn) as c:
            row = await (await c.execute(*calls.cancel(job_id))).fetchone()
        assert row is not None
        return bool(row[0])

    async def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """Wait until the job has finished, or `timeout` seconds; return it as it is then.

        Woken by the NOTIFY that complete, fail, cancel and recovery send, on the
        LISTEN connection that all of this queue's waits share; the job is read
        again after each wake-up and at least every few seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        woken = self._listener.register(job_id)
        try:
            while True:
                # LISTEN before the read, so a finish right after it still wakes us.
                await self._listener.listening(timeout=WAIT_REREAD_SECONDS)
                woken.clear()
                job = await self.get_job(job_id)
                if job.finished:
                    return job
                remaining = WAIT_REREAD_SECONDS if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return job
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(remaining, WAIT_REREAD_SECONDS))
        finally:
            self._listener.unregister(job_id, woken)
