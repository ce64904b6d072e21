"""What the parts of one worker run share: the jobs held, the handler slots, two signals.

Every part runs on the worker's one event loop, so none of this needs a lock:
a part reads and writes it between two awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from pyqueue.errors import PyqueueError
from pyqueue.worker.outcome import Held

logger = logging.getLogger("pyqueue.worker")


class State:
    """The jobs held from claim until their outcome is stored, and the free slots.

    A slot is taken from the claim of a job until its outcome is stored, not
    only while its handler runs: so the jobs this worker holds `running` in the
    database (the most a kill -9 can make run again) never exceed `concurrency`,
    however far storing outcomes falls behind the handlers.

    - `held`: every job this worker has claimed and not yet stored an outcome
      for; the lease keeper extends the leases of exactly these. Never more
      than `concurrency`: the claimer claims only for the slots left (`free`).
    - `running`: handlers started and not finished (a part of `held`).
    - `slot_free`: set when a handler finishes or a job is no longer held (the
      claimer clears it before waiting).
    - `wake`: a job may be due, claim now (set by the listener, cleared by the
      claimer before each claim, so a NOTIFY during a claim claims again).
    - `stopping`: claim no more (set once, by stop() or fail()).
    - `failure`: why the run must end in an error, if it must (set by fail()).
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.held: dict[int, Held] = {}
        self.running = 0
        self.slot_free = asyncio.Event()
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.failure: PyqueueError | None = None

    @property
    def free(self) -> int:
        """Slots for new claims: those of jobs neither running nor awaiting storage."""
        return self.concurrency - len(self.held)

    def forget(self, held: Held) -> None:
        """The job's outcome is stored (or given up on): it is no longer held, its slot is free."""
        if self.held.get(held.job.id) is held:
            del self.held[held.job.id]
            self.slot_free.set()

    def fail(self, error: PyqueueError) -> None:
        """Stop as stop() does, and end the run with `error` once stopped."""
        if self.failure is None:
            self.failure = error
            logger.error("stopping: %s", error)
        self.stop()

    def stop(self) -> None:
        """Claim no more; wake whatever waits on one of these events."""
        for event in (self.stopping, self.wake, self.slot_free):
            event.set()


async def wait_for(event: asyncio.Event, timeout: float | None = None) -> None:
    """Until `event` is set or `timeout` seconds pass."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


async def wait_any(*events: asyncio.Event, timeout: float | None = None) -> None:
    """Until one of `events` is set, or `timeout` seconds pass."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
