"""One database connection for the worker, re-opened with capped backoff.

The worker must outlive a database restart or a pg_terminate_backend of its
sessions. Every SQL call it makes goes through `Reconnecting.call`: when the
connection breaks (or cannot be opened), the call logs it once, waits 0.1 s,
0.2 s, 0.4 s ... at most 5 s between attempts, and tries again on a new
connection. That is safe because every worker call is fenced by a lease token
in SQL: a complete or fail repeated after an answer was lost changes nothing
the second time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import set_json_loads

from pyqueue.errors import first_line

logger = logging.getLogger("pyqueue.worker")

# libpq settings applied unless the conninfo sets them: give up on a server
# that does not answer a connection attempt, and notice a silently dropped
# TCP connection (the LISTEN session idles for long periods).
CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "15",
    "keepalives_interval": "5",
    "keepalives_count": "3",
}


_decode_json = json.JSONDecoder().decode


def _load_json(data: str | bytes) -> Any:
    """Payloads as json.loads reads them, minus its encoding sniffing: PostgreSQL
    always sends UTF-8, and every claimed job's payload is decoded here."""
    return _decode_json(data if isinstance(data, str) else data.decode())


class Stopping(Exception):
    """A call was abandoned because the worker is stopping."""


class Backoff:
    """Delays 0.1 s, 0.2 s, 0.4 s ... capped at 5 s; reset after a success."""

    def __init__(self, initial: float = 0.1, cap: float = 5.0) -> None:
        self.initial = initial
        self.cap = cap
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.initial


def with_defaults(conninfo: str) -> str:
    """conninfo plus those CONNECT_DEFAULTS that it (or PGCONNECT_TIMEOUT) does not set."""
    given = conninfo_to_dict(conninfo)
    if os.environ.get("PGCONNECT_TIMEOUT"):
        given["connect_timeout"] = os.environ["PGCONNECT_TIMEOUT"]
    return make_conninfo(conninfo, **{k: v for k, v in CONNECT_DEFAULTS.items() if k not in given})


def connection_lost(error: psycopg.Error, conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether the error means "try again on a new connection" rather than a bug.

    A closed connection (server restart, pg_terminate_backend, network) and the
    SQLSTATE classes for connection exceptions (08), operator intervention (57P)
    and transaction rollbacks such as deadlocks (40) are transient.
    """
    sqlstate = error.sqlstate or ""
    return conn.closed or sqlstate.startswith(("08", "57P", "40"))


async def sleep_unless(event: asyncio.Event | None, delay: float) -> None:
    """Sleep `delay` seconds, or less if `event` is set meanwhile."""
    if event is None:
        await asyncio.sleep(delay)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), delay)


class Reconnecting:
    """An autocommit AsyncConnection that `call` re-opens whenever it breaks."""

    def __init__(
        self, conninfo: str, name: str, on_reconnect: Callable[[], None] | None = None
    ) -> None:
        self.conninfo = with_defaults(conninfo)
        self.name = name
        self.on_reconnect = on_reconnect  # called when a broken connection is replaced
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._connecting = asyncio.Lock()
        self._backoff = Backoff()
        self._down_since: float | None = None
        self._last_warning = 0.0

    async def connect(self, stopping: asyncio.Event | None = None) -> psycopg.AsyncConnection[Any]:
        """The open connection, opening one first (retrying with backoff) if needed.

        Raises Stopping if `stopping` is set while no connection can be had. The
        lock is held for one attempt only, not across the waits between
        attempts, so a caller with `stopping` is never stuck behind one without.
        """
        while True:
            async with self._connecting:
                if self._conn is not None and not self._conn.closed:
                    return self._conn
                if stopping is not None and stopping.is_set():
                    raise Stopping
                try:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self.conninfo, autocommit=True
                    )
                    set_json_loads(_load_json, self._conn)
                except psycopg.OperationalError as error:
                    self._note_down(error)
                    delay = self._backoff.next_delay()
                    # Say it again every minute of an outage, not every attempt.
                    now = time.monotonic()
                    level = logging.WARNING if now - self._last_warning > 60 else logging.DEBUG
                    if level == logging.WARNING:
                        self._last_warning = now
                    logger.log(
                        level,
                        "%s: cannot connect (%s); next try in %.1f s",
                        self.name,
                        first_line(error),
                        delay,
                    )
                else:
                    if self._down_since is not None:
                        logger.warning(
                            "%s: connected again after %.1f s",
                            self.name,
                            time.monotonic() - self._down_since,
                        )
                        self._down_since = None
                        if self.on_reconnect is not None:
                            self.on_reconnect()
                    self._backoff.reset()
                    return self._conn
            await sleep_unless(stopping, delay)

    def _note_down(self, error: BaseException) -> None:
        if self._down_since is None:
            self._down_since = self._last_warning = time.monotonic()
            logger.warning(
                "%s: database connection lost (%s); reconnecting", self.name, first_line(error)
            )

    def lost(self, error: BaseException) -> None:
        """Forget a connection that broke, so the next call opens a new one."""
        self._note_down(error)
        self._conn = None

    async def call(
        self,
        query: str,
        params: Sequence[Any] = (),
        *,
        retry: bool = True,
        stopping: asyncio.Event | None = None,
    ) -> list[tuple[Any, ...]]:
        """Run one statement and return its rows (see `execute`)."""
        cursor = await self.execute(query, params, retry=retry, stopping=stopping)
        return await cursor.fetchall() if cursor.description else []

    async def execute(
        self,
        query: str,
        params: Sequence[Any] = (),
        *,
        binary: bool = False,
        retry: bool = True,
        stopping: asyncio.Event | None = None,
    ) -> psycopg.AsyncCursor[Any]:
        """Run one statement and return its cursor, rows received but not yet read.

        Reading them (fetchall) needs no round trip, so the connection can run
        the next statement first. `binary` asks for the rows in binary format.
        With `retry`, a lost connection is re-opened and the statement run again
        until it succeeds (or `stopping` is set: Stopping is raised). Without, the
        psycopg error is raised. Errors that are not about the connection (bad
        arguments...) are always raised.
        """
        while True:
            conn = await self.connect(stopping)
            try:
                cursor = conn.cursor(binary=binary)
                await cursor.execute(query, params)
                self._backoff.reset()
                return cursor
            except psycopg.Error as error:
                if not connection_lost(error, conn):
                    raise
                if conn.closed:
                    self.lost(error)
                else:
                    logger.warning(
                        "%s: transient database error, retrying: %s", self.name, first_line(error)
                    )
                if not retry:
                    raise
                await sleep_unless(stopping, self._backoff.next_delay())

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
