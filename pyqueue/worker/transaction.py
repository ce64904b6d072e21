"""Job transactions: a handler's writes and its job's completion, committed together.

`with job.transaction() as conn:` (or `async with` in an async handler) gives
the handler a psycopg connection to the worker's database, inside a
transaction. When the block ends without an exception, the job is completed in
that same transaction (pyqueue.complete_or_raise, fenced by the run's lease
token) and it commits. When the run no longer holds the job (its lease
expired and another worker took the job, it was cancelled or timed out), the
completion refuses, the whole transaction rolls back and LeaseLost is raised.
So writes made there land exactly once per job, however often the job runs:
the run that commits them is the run that completes the job.

Connections: a plain handler's thread keeps one, opened at its first job
transaction; async handlers take one from a list of idle ones, or open one.
They are in autocommit mode, so that the block's transaction is a real one
(BEGIN ... COMMIT), never a savepoint inside a transaction that an earlier
handler left open; a connection found inside a transaction is replaced.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq

from pyqueue import queries
from pyqueue.errors import LeaseLost
from pyqueue.values import to_json

if TYPE_CHECKING:
    from pyqueue.worker.context import JobContext

# The refusal of complete_or_raise: the run no longer holds the job.
REFUSED = "55000"  # object_not_in_prerequisite_state


class TransactionConnections:
    """The connections of job transactions to `conninfo`, opened when first needed."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._per_thread = threading.local()
        self._idle_async: list[psycopg.AsyncConnection[Any]] = []
        self._opened: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()

    def for_this_thread(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._per_thread, "conn", None)
        if conn is not None and not conn.closed and not _idle(conn):
            conn.close()
        if conn is None or conn.closed or conn.broken:
            conn = self._per_thread.conn = psycopg.connect(self.conninfo, autocommit=True)
            with self._lock:
                self._opened = [c for c in self._opened if not c.closed] + [conn]
        return conn

    async def take(self) -> psycopg.AsyncConnection[Any]:
        while self._idle_async:
            conn = self._idle_async.pop()
            if not conn.closed and not conn.broken:
                return conn
        return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)

    async def give_back(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if conn.closed or not _idle(conn):
            await conn.close()
        else:
            self._idle_async.append(conn)

    async def close(self) -> None:
        """Close the idle async connections and those of the handler threads."""
        for conn in self._idle_async:
            await conn.close()
        self._idle_async.clear()
        with self._lock:
            opened, self._opened = self._opened, []
        for sync_conn in opened:
            sync_conn.close()


class JobTransaction:
    """What `job.transaction(result)` returns: use it with `with` or `async with`."""

    def __init__(
        self, context: JobContext, connections: TransactionConnections, params: list[Any]
    ) -> None:
        self._context = context
        self._connections = connections
        self._params = params  # complete_or_raise's: job id, lease token, result
        self._sync: contextlib.AbstractContextManager[psycopg.Connection[Any]] | None = None
        self._async: contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Any]] | None
        self._async = None

    def __enter__(self) -> psycopg.Connection[Any]:
        self._sync = self._run()
        return self._sync.__enter__()

    def __exit__(self, *exc: Any) -> bool | None:
        assert self._sync is not None
        return self._sync.__exit__(*exc)

    async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
        self._async = self._run_async()
        return await self._async.__aenter__()

    async def __aexit__(self, *exc: Any) -> bool | None:
        assert self._async is not None
        return await self._async.__aexit__(*exc)

    @contextlib.contextmanager
    def _run(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._connections.for_this_thread()
        with conn.transaction():
            yield conn
            # Raised inside the transaction block, so that it rolls back.
            refused = None
            try:
                conn.execute(queries.COMPLETE_IN_TRANSACTION, self._params)
            except psycopg.Error as error:
                if error.sqlstate != REFUSED:
                    raise
                refused = error
            if refused is not None:
                raise self._lost(refused) from refused
        self._context.settled = True

    @contextlib.asynccontextmanager
    async def _run_async(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        conn = await self._connections.take()
        try:
            async with conn.transaction():
                yield conn
                refused = None
                try:
                    await conn.execute(queries.COMPLETE_IN_TRANSACTION, self._params)
                except psycopg.Error as error:
                    if error.sqlstate != REFUSED:
                        raise
                    refused = error
                if refused is not None:
                    raise self._lost(refused) from refused
            self._context.settled = True
        finally:
            await self._connections.give_back(conn)

    def _lost(self, error: psycopg.Error) -> LeaseLost:
        message = (error.diag.message_primary or str(error)).removeprefix("pyqueue: ")
        return LeaseLost(f"{message}; the job transaction was rolled back")


def _idle(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    return conn.info.transaction_status == pq.TransactionStatus.IDLE


def result_json(result: Any) -> str | None:
    """The result to store with the completion, as JSON text (None: no result)."""
    return None if result is None else to_json(result, "the job transaction's result")
