"""Slots for `async def` handlers: long-lived tasks that run one job after another.

A task per job would cost the event loop, the worker's bottleneck, a Task
object, its registration and its done callbacks for every job. A slot task
instead takes the next ready job itself when a handler returns, and parks only
when none is ready. It yields to the loop between two jobs, so that handlers
that never suspend cannot starve the claimer and the completer.

A new slot task is started only when every slot task is busy with a job, so
there are at most concurrency + 1 of them: a slot finishing its job still
counts as busy when its outcome starts the next waiting job.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

from pyqueue.worker.outcome import Held


class AsyncSlots:
    """Runs `run(held)` for each job submitted, on slot tasks of the running loop."""

    def __init__(self, run: Callable[[Held], Awaitable[None]]) -> None:
        self._run = run
        self.ready: collections.deque[Held] = collections.deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self._busy = 0
        self._parked: collections.deque[asyncio.Future[None]] = collections.deque()

    def submit(self, held: Held) -> None:
        """Run the job on an idle slot, or on a new one if every slot is busy."""
        self.ready.append(held)
        while self._parked:
            parked = self._parked.popleft()
            if not parked.done():
                parked.set_result(None)
                return
        if self._busy == len(self.tasks):
            task = asyncio.ensure_future(self._serve())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def withdraw(self, held: Held) -> bool:
        """Take back a job no slot has picked up yet; False if one has."""
        try:
            self.ready.remove(held)
        except ValueError:
            return False
        return True

    def cancel(self) -> list[asyncio.Task[None]]:
        """Cancel every slot (and so the handlers they run); the tasks, to wait for."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        return tasks

    async def _serve(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self.ready:
                parked = loop.create_future()
                self._parked.append(parked)
                await parked
                continue
            held = self.ready.popleft()
            held.task = task
            self._busy += 1
            try:
                await self._run(held)
            except asyncio.CancelledError:
                if not held.abandoned:
                    raise  # the slot itself is cancelled: the worker is stopping
            finally:
                self._busy -= 1
            if held.abandoned and task.cancelling():
                task.uncancel()  # only this job was given up on; the slot goes on
            await asyncio.sleep(0)
