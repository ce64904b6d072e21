"""The listener: LISTEN on its own connection, waking the claimer for our queues.

Enqueue notifies the jobs channel with the queue name at commit, so an idle
worker claims within milliseconds instead of at its next poll. The listener
sets `listening` once LISTEN is in place, and wakes the claimer then and after
every reconnect, since jobs may have come while nobody listened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import psycopg

from pyqueue import queries
from pyqueue.worker.connection import Reconnecting
from pyqueue.worker.state import State

logger = logging.getLogger("pyqueue.worker")


class Listener:
    """Sets `state.wake` on every notification for one of `queues`, until cancelled."""

    def __init__(
        self, db: Reconnecting, state: State, queues: Sequence[str], retry_interval: float
    ) -> None:
        self.db = db
        self.state = state
        self.queues = frozenset(queues)
        self.retry_interval = retry_interval
        self.listening = asyncio.Event()

    async def run(self) -> None:
        wake, wanted = self.state.wake, self.queues
        while True:
            conn = await self.db.connect()
            try:
                await conn.execute(queries.LISTEN_JOBS)
                self.listening.set()
                wake.set()
                async for note in conn.notifies():
                    if note.payload in wanted:
                        wake.set()
            except psycopg.Error as error:
                if conn.closed:
                    self.db.lost(error)
                else:
                    logger.error("LISTEN failed: %s", error)
                    await asyncio.sleep(self.retry_interval)
