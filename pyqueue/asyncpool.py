"""The connection one AsyncQueue call runs on: the caller's, or one from its pool.

The asyncio twin of pool.py, with the same rules: pooled connections are
autocommit and are checked before use only when their socket says the server
hung up.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from pyqueue.errors import raise_translated, translate_errors


def async_pool(conninfo: str, max_connections: int) -> AsyncConnectionPool:
    """AsyncQueue's pool, not yet opened (opening needs the event loop)."""
    return AsyncConnectionPool(
        conninfo,
        min_size=0,
        max_size=max_connections,
        open=False,
        kwargs={"autocommit": True},
        check=check_idle_connection,
        name="pyqueue-async-client",
    )


async def check_idle_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    """Raise if a pooled connection is unusable (see pool.server_hung_up)."""
    try:
        waiting = bool(select.select([conn.fileno()], [], [], 0)[0])
    except (ValueError, OSError):
        waiting = True
    if waiting:
        await AsyncConnectionPool.check_connection(conn)


class AsyncCallConnection:
    """`async with`: the connection that one call runs on, its errors translated."""

    __slots__ = ("_borrowed", "_given", "_pool")

    def __init__(
        self, pool: AsyncConnectionPool, given: psycopg.AsyncConnection[Any] | None
    ) -> None:
        self._pool = pool
        self._given = given
        self._borrowed: psycopg.AsyncConnection[Any] | None = None

    async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
        if self._given is not None:
            return self._given
        with translate_errors():
            self._borrowed = await self._pool.getconn()
        return self._borrowed

    async def __aexit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        if self._borrowed is not None:
            await self._pool.putconn(self._borrowed)
            self._borrowed = None
        if error is not None:
            raise_translated(error)
