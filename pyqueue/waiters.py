"""One LISTEN connection shared by every `AsyncQueue.wait` of a queue object.

A waiter registers the job id it waits for; one task reads the notifications
that complete, fail, cancel and recovery send (the finished job ids) and wakes
the waiters of those ids. A waiter reads its job again after each wake-up and
at least every WAIT_REREAD_SECONDS, so a notification missed while the
connection was down delays it, never strands it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg

from pyqueue import queries
from pyqueue.errors import first_line

logger = logging.getLogger("pyqueue.client")


class FinishedListener:
    """Wakes the waiters of jobs as their `pyqueue_finished` notifications arrive."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._waiting: dict[int, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    def register(self, job_id: int) -> asyncio.Event:
        """An event set whenever job_id may have finished (or the connection dropped)."""
        event = asyncio.Event()
        self._waiting.setdefault(job_id, set()).add(event)
        return event

    def unregister(self, job_id: int, event: asyncio.Event) -> None:
        events = self._waiting.get(job_id)
        if events is not None:
            events.discard(event)
            if not events:
                del self._waiting[job_id]

    async def listening(self, timeout: float) -> None:
        """Start listening unless it is (re)started already; wait up to `timeout` for it."""
        if self._task is None or self._task.done():
            self._listening.clear()
            self._task = asyncio.create_task(self._listen(), name="pyqueue-wait-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), timeout)

    async def _listen(self) -> None:
        try:
            async with await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True
            ) as conn:
                await conn.execute(queries.LISTEN_FINISHED)
                self._listening.set()
                async for note in conn.notifies():
                    for text in note.payload.split(","):
                        for event in self._waiting.get(int(text), ()):
                            event.set()
        except (psycopg.Error, OSError) as error:
            # The waiters poll meanwhile; the next wait() listens again.
            logger.warning("wait: LISTEN connection lost (%s)", first_line(error))
        finally:
            self._listening.clear()
            for events in self._waiting.values():
                for event in events:
                    event.set()

    @property
    def connected(self) -> bool:
        return self._listening.is_set()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def __repr__(self) -> str:
        waiting: Any = sum(len(e) for e in self._waiting.values())
        return f"FinishedListener(waiters={waiting}, connected={self.connected})"
