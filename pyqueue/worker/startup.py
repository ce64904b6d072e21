"""Before a worker's first claim: a schema it can work with, the database waited for."""

from __future__ import annotations

import asyncio
import logging

import psycopg

from pyqueue import schema
from pyqueue.connecting import connect
from pyqueue.errors import CannotConnect, first_line
from pyqueue.worker.connection import Backoff, sleep_unless, with_defaults

logger = logging.getLogger("pyqueue.worker")


def check_schema(conninfo: str, migrate: bool = False) -> None:
    """Raise SchemaError unless this client can work with the schema; migrate first if asked."""
    if migrate:
        schema.migrate(with_defaults(conninfo))
    with connect(with_defaults(conninfo)) as conn:
        schema.check_version(conn)


async def wait_for_schema(conninfo: str, stopping: asyncio.Event, migrate: bool = False) -> bool:
    """Check the schema before claiming anything, waiting out an unreachable database.

    A worker started during an outage (or a restart of the database) waits for
    it, with backoff, as it would mid-run; SchemaError (a schema missing, or one
    this client cannot work with) is final. False when a stop was asked for
    while waiting.
    """
    backoff = Backoff()
    while not stopping.is_set():
        try:
            await asyncio.to_thread(check_schema, conninfo, migrate)
            return True
        except (psycopg.OperationalError, CannotConnect) as error:
            if isinstance(error, CannotConnect) and error.reason == "malformed connection string":
                raise
            delay = backoff.next_delay()
            logger.warning(
                "database unreachable (%s); trying again in %.1f s", first_line(error), delay
            )
            await sleep_unless(stopping, delay)
    return False
