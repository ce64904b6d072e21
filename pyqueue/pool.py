"""The connection one client call runs on: the caller's, or one from the pool.

A pooled connection is autocommit (each call is one statement, so BEGIN and
COMMIT would be round trips for nothing) and is checked before use only when
its socket says the server hung up.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from pyqueue.errors import raise_translated, translate_errors


def open_pool(conninfo: str, max_connections: int) -> ConnectionPool:
    """The client's pool: autocommit connections, checked as check_idle_connection says."""
    return ConnectionPool(
        conninfo,
        min_size=0,
        max_size=max_connections,
        open=True,
        kwargs={"autocommit": True},
        check=check_idle_connection,
        name="pyqueue-client",
    )


def check_idle_connection(conn: psycopg.Connection[Any]) -> None:
    """Raise if a pooled connection is unusable; the pool then replaces it.

    An idle connection whose server hung up (restart, pg_terminate_backend)
    has the server's goodbye or end-of-file waiting on its socket; a healthy
    one has nothing. Only when something is waiting is it checked with a
    round trip, which would otherwise double the cost of a short call. A
    hang-up that reaches the socket after this check fails the call that
    follows, as it would after any check.
    """
    try:
        waiting = bool(select.select([conn.fileno()], [], [], 0)[0])
    except (ValueError, OSError):
        # A descriptor select() cannot watch, or one already closed.
        waiting = True
    if waiting:
        ConnectionPool.check_connection(conn)


class CallConnection:
    """`with`: the connection that one client call runs on, its errors translated.

    The caller's connection when one is given (the call joins its transaction),
    else one borrowed from the pool for the call. A class rather than a
    @contextmanager generator: every call goes through it.
    """

    __slots__ = ("_borrowed", "_given", "_pool")

    def __init__(self, pool: ConnectionPool, given: psycopg.Connection[Any] | None) -> None:
        self._pool = pool
        self._given = given
        self._borrowed: psycopg.Connection[Any] | None = None

    def __enter__(self) -> psycopg.Connection[Any]:
        if self._given is not None:
            return self._given
        # getconn/putconn rather than pool.connection(): that one also wraps
        # the call in a transaction block, which autocommit connections do not
        # need.
        with translate_errors():
            self._borrowed = self._pool.getconn()
        return self._borrowed

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        if self._borrowed is not None:
            self._pool.putconn(self._borrowed)
            self._borrowed = None
        if error is not None:
            raise_translated(error)
