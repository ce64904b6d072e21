"""What the parts of one worker run share: the jobs held, the handler slots, the signals.

Every part runs on the worker's one event loop, so none of this needs a lock:
a part reads and writes it between two awaits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

from pyqueue.errors import PyqueueError
from pyqueue.worker.outcome import Held

logger = logging.getLogger("pyqueue.worker")


class State:
    """The jobs held from claim until their outcome is stored, and the handler slots.

    Two bounds, which the claimer keeps by claiming only for the `room` they leave:

    - at most `capacity` (concurrency + prefetch) jobs running or waiting to
      run: of those, at most `concurrency` run handlers; the others wait in
      memory for a slot (claimed ahead, so that a freed slot starts its next
      job without a round trip), never more than `prefetch`;
    - at most 2 x capacity jobs held in all, counting those whose handlers are
      done and whose outcomes wait to be stored: storing a burst does not hold
      up the next claim, and when storing falls behind, the worker stops
      claiming rather than hold ever more.

    So a worker holds at most 2 x capacity jobs `running` in the database (the
    most a kill -9 can make run again), and at most `prefetch` that another
    worker could have started.

    - `held`: every job this worker has claimed and not yet stored an outcome
      for; the lease keeper extends the leases of exactly these.
    - `waiting`: jobs claimed ahead and not started, oldest first (a part of
      `held`); handed back at a stop.
    - `running`: handlers started and not finished (a part of `held`).
    - `slot_free`: set when a handler finishes or a job is no longer held (the
      claimer clears it before waiting).
    - `wake`: a job may be due, claim now (set by the listener, cleared by the
      claimer before each claim, so a NOTIFY during a claim claims again).
    - `stopping`: claim no more, start no waiting job (set once, by stop() or fail()).
    - `failure`: why the run must end in an error, if it must (set by fail()).
    """

    def __init__(self, concurrency: int, prefetch: int = 0) -> None:
        self.concurrency = concurrency
        self.capacity = concurrency + prefetch
        self.held: dict[int, Held] = {}
        self.waiting: collections.deque[Held] = collections.deque()
        self.running = 0
        self.slot_free = asyncio.Event()
        self.wake = asyncio.Event()
        self.stopping = asyncio.Event()
        self.failure: PyqueueError | None = None

    @property
    def room(self) -> int:
        """How many more jobs may be claimed under the two bounds on jobs held."""
        active = self.running + len(self.waiting)
        storing = len(self.held) - active
        return self.capacity - active - max(0, storing - self.capacity)

    @property
    def idle_slots(self) -> int:
        """Handler slots that no running or waiting job will fill."""
        return self.concurrency - self.running - len(self.waiting)

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
