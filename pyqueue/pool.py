"""The connection one client call runs on: the caller's, or one from the pool.

The pool opens a connection in the calling thread when it has none idle, so
a database that cannot be reached fails the call at once (within the connect
timeout) with libpq's reason, and the first call after the database is back
succeeds: there is no background reconnect loop to wait for. Pooled
connections are autocommit (each call is one statement, so BEGIN and COMMIT
would be round trips for nothing) and are checked before use only when their
socket says the server hung up.
"""

from __future__ import annotations

import select
import threading
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from pyqueue import queries
from pyqueue.connecting import connect, with_connect_timeout
from pyqueue.errors import ConnectionLost, OutcomeUnknown, PyqueueError, raise_translated

# Seconds a call waits for one of the pool's connections while all are in use.
DEFAULT_WAIT_TIMEOUT = 30.0


class PoolExhausted(PyqueueError):
    """Every connection of the pool stayed in use for the whole wait."""


def server_hung_up(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection is unusable (closed, or its server hung up).

    An idle connection whose server hung up (restart, pg_terminate_backend)
    has the server's goodbye or end-of-file waiting on its socket; a healthy
    one has nothing. Only when something is waiting is it checked with a
    round trip, which would otherwise double the cost of a short call. A
    hang-up that reaches the socket after this check fails the call that
    follows, as it would after any check.
    """
    if conn.closed:
        return True
    try:
        waiting = bool(select.select([conn.fileno()], [], [], 0)[0])
    except (ValueError, OSError):
        return True  # a descriptor select() cannot watch, or one already closed
    if not waiting:
        return False
    try:
        conn.execute(queries.PING)
    except psycopg.Error:
        return True
    return False


class ClientPool:
    """Up to `max_connections` autocommit connections, opened on demand, kept while usable."""

    def __init__(
        self,
        conninfo: str,
        max_connections: int,
        connect_timeout: float | None = None,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> None:
        self.conninfo = with_connect_timeout(conninfo, connect_timeout)
        self.max_connections = max_connections
        self.wait_timeout = wait_timeout
        self._idle: list[psycopg.Connection[Any]] = []
        self._in_use = 0
        # One lock for both: a call takes it once to borrow and once to give back.
        self._changed = threading.Condition(threading.Lock())
        self._closed = False

    def getconn(self) -> psycopg.Connection[Any]:
        """An idle connection that still works, else a new one; CannotConnect if none opens."""
        if self._closed:
            raise PyqueueError("this Queue is closed")
        with self._changed:
            if self._in_use >= self.max_connections and not self._changed.wait_for(
                lambda: self._in_use < self.max_connections, self.wait_timeout
            ):
                raise PoolExhausted(
                    f"all {self.max_connections} connections of this Queue stayed in use for "
                    f"{self.wait_timeout:g} s: give it more (max_connections) or call it from "
                    "fewer threads at once"
                )
            self._in_use += 1
            conn = self._idle.pop() if self._idle else None
        try:
            while conn is not None and server_hung_up(conn):
                conn.close()
                with self._changed:
                    conn = self._idle.pop() if self._idle else None
            return conn if conn is not None else connect(self.conninfo, autocommit=True)
        except BaseException:
            self._give_back(None)
            raise

    def putconn(self, conn: psycopg.Connection[Any]) -> None:
        """Give a connection back: kept when idle and open, closed otherwise."""
        idle = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        if self._closed or not idle:
            conn.close()
            self._give_back(None)
        else:
            self._give_back(conn)

    def _give_back(self, conn: psycopg.Connection[Any] | None) -> None:
        with self._changed:
            if conn is not None:
                self._idle.append(conn)
            self._in_use -= 1
            self._changed.notify()

    def close(self) -> None:
        self._closed = True
        with self._changed:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class CallConnection:
    """`with`: the connection that one client call runs on, its errors translated.

    The caller's connection when one is given (the call joins its transaction),
    else one borrowed from the pool for the call. When a borrowed connection
    breaks mid-call, the error says whether the call may have happened:
    `writes` names what a call that writes does (OutcomeUnknown), None for a
    call that only reads (ConnectionLost). A class rather than a
    @contextmanager generator: every call goes through it.
    """

    __slots__ = ("_borrowed", "_given", "_pool", "_writes")

    def __init__(
        self,
        pool: ClientPool,
        given: psycopg.Connection[Any] | None,
        writes: str | None = None,
    ) -> None:
        self._pool = pool
        self._given = given
        self._writes = writes
        self._borrowed: psycopg.Connection[Any] | None = None

    def __enter__(self) -> psycopg.Connection[Any]:
        if self._given is not None:
            return self._given
        self._borrowed = self._pool.getconn()
        return self._borrowed

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        borrowed, self._borrowed = self._borrowed, None
        if borrowed is not None:
            self._pool.putconn(borrowed)
            if isinstance(error, psycopg.OperationalError) and borrowed.closed:
                raise lost(error, self._writes) from error
        if error is not None:
            raise_translated(error)


def lost(error: psycopg.Error, writes: str | None) -> ConnectionLost:
    """The error for a call whose connection broke before its answer arrived."""
    cause = " ".join(str(error).split()) or type(error).__name__
    if writes is None:
        return ConnectionLost(f"the database connection was lost ({cause}); trying again is safe")
    message = f"the database connection was lost during {writes} ({cause}): it may or may not "
    if writes.startswith("enqueue"):
        return OutcomeUnknown(
            message + "have happened; retrying with the same idempotency key is safe"
        )
    return OutcomeUnknown(message + "have happened")
