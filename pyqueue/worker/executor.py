"""The executor: runs each claimed job's handler in a slot and queues its outcome for the completer.

A job claimed while every slot is busy waits in `state.waiting` and starts
when a handler finishes, on the loop, without a round trip to the database.

An `async def` handler runs on a slot task of the worker's loop (slots.py); a
plain one on a daemon thread (plain.py), whose outcome comes back to the loop
with those of the other threads that finished meanwhile.

Outcomes go to the completer in lists, the outcomes finished together in one
list (a burst of threads' outcomes is one item, not one per job). A job's
outcome enters `outcomes` only after its last progress report is stored (or
PROGRESS_FLUSH_SECONDS passed), so a late report never lands on a job that is
already completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pyqueue import queries
from pyqueue.errors import HungHandlers
from pyqueue.jobs import ClaimedJob
from pyqueue.values import sql_text
from pyqueue.worker.connection import Reconnecting
from pyqueue.worker.context import JobContext
from pyqueue.worker.outcome import Held, Outcomes, encode_result, failure
from pyqueue.worker.plain import PlainThreads, Posted
from pyqueue.worker.slots import AsyncSlots
from pyqueue.worker.state import State
from pyqueue.worker.transaction import TransactionConnections

logger = logging.getLogger("pyqueue.worker")

Handler = Callable[[Any, JobContext], Any]

# How long a finished handler waits for its last progress report to be stored.
PROGRESS_FLUSH_SECONDS = 5.0
# After the grace period, how long cancelled async handlers get to hand in outcomes.
CANCEL_SECONDS = 2.0


def is_async(handler: Handler) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004  (async callable objects)
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


class Executor:
    """Runs handlers in at most `state.concurrency` slots; outcomes go to `outcomes`."""

    def __init__(
        self,
        handlers: dict[str, Handler],
        state: State,
        outcomes: Outcomes,
        progress_db: Reconnecting,
        max_abandoned: int,
    ) -> None:
        self.handlers = handlers
        self.state = state
        self.outcomes = outcomes
        self.progress_db = progress_db
        self.loop = asyncio.get_running_loop()
        self.runs_async = {queue: is_async(handler) for queue, handler in handlers.items()}
        self.slots = AsyncSlots(self._run_async)
        # Finished jobs waiting for their last progress report.
        self.tasks: set[asyncio.Task[None]] = set()
        self.threads = PlainThreads(
            state.concurrency, handlers, self.loop, self._finish_one, self._finish_burst
        )
        self._send_progress = self.send_progress  # bound once, not once per job
        self.transactions = TransactionConnections(progress_db.conninfo)
        # Handler threads still running jobs given up on, and how many may be.
        self.abandoned_threads = 0
        self.max_abandoned = max_abandoned

    def start(self, job: ClaimedJob) -> None:
        """Hold a claimed job: run its handler in a free slot, or queue it for the next one."""
        held = Held(job, JobContext(job, self.loop, self._send_progress, self.transactions))
        state = self.state
        state.held[job.id] = held
        if state.running < state.concurrency and not state.waiting:
            self._run(held)
        else:
            state.waiting.append(held)

    def take_waiting(self) -> list[ClaimedJob]:
        """The jobs not started, no longer held (at a stop: the claimer hands them back)."""
        state = self.state
        jobs = []
        while state.waiting:
            held = state.waiting.popleft()
            held.finished = True
            state.forget(held)
            jobs.append(held.job)
        return jobs

    def _run(self, held: Held) -> None:
        held.started = True
        self.state.running += 1
        if self.runs_async[held.job.queue]:
            self.slots.submit(held)
        else:
            self.threads.submit(held)

    def _start_waiting(self) -> None:
        """Start waiting jobs in the free slots, unless the worker is stopping."""
        state = self.state
        while state.waiting and state.running < state.concurrency and not state.stopping.is_set():
            self._run(state.waiting.popleft())

    def abandon(self, held: Held) -> None:
        """Stop waiting for the handler of a job the worker no longer holds.

        The job timed out, was cancelled or was recovered: SQL will refuse its
        outcome, so its slot is freed now. An async handler is cancelled. A
        thread cannot be stopped: it is left to finish its call and end, and
        another takes its place; past max_abandoned such threads, the worker
        stops (HungHandlers) for its supervisor to start a fresh process.
        """
        if held.finished:
            return
        held.finished = held.abandoned = True
        state = self.state
        state.forget(held)
        if not held.started:  # it waited for a slot: nothing runs
            state.waiting.remove(held)
            return
        state.running -= 1
        state.slot_free.set()
        # Not at once: the lease keeper gives up on every lost job in one go, and
        # a waiting job started now might be one of those it has yet to reach.
        self.loop.call_soon(self._start_waiting)
        if self.runs_async[held.job.queue]:
            if not self.slots.withdraw(held) and held.task is not None:
                held.task.cancel()
            return
        self.abandoned_threads += 1
        self.threads.add()
        if self.abandoned_threads > self.max_abandoned:
            state.fail(
                HungHandlers(
                    f"{self.abandoned_threads} handler threads still run jobs the worker "
                    f"gave up on (timed out, cancelled or recovered), more than "
                    f"max_abandoned_threads ({self.max_abandoned}): the worker stops, "
                    "for its supervisor to start it again"
                )
            )

    async def send_progress(self, job: ClaimedJob, pct: int, message: str | None) -> None:
        """Store one progress report; not retried (the next report supersedes it)."""
        text = None if message is None else sql_text(message)
        params = [job.id, job.lease_token, pct, text]
        await self.progress_db.call(queries.REPORT_PROGRESS, params, retry=False)

    async def finish(self, grace: float) -> None:
        """Give running handlers `grace` seconds to finish; fail the jobs of those that do not.

        Their outcomes are queued (not stored) when this returns.
        """
        state = self.state
        if not (state.running or self.tasks):
            self.slots.cancel()
            return
        logger.info("stopping: waiting up to %g s for %d running handler(s)", grace, state.running)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_finished(), grace)
        late = list(self.tasks)
        for task in late:
            task.cancel()
        late += self.slots.cancel()
        if late:  # so that the outcomes they hold are queued before the last writes
            await asyncio.wait(late, timeout=CANCEL_SECONDS)
        unfinished = [h for h in state.held.values() if h.started and not h.finished]
        if unfinished:
            logger.warning(
                "grace period of %g s over: failing jobs %s whose handlers still run",
                grace,
                [h.job.id for h in unfinished],
            )
        for held in unfinished:
            held.finished = True
            held.error = f"the worker stopped before the handler finished (grace period {grace} s)"
            state.running -= 1
        if unfinished:
            self.outcomes.put_nowait(unfinished)

    def close(self) -> None:
        """Cancel async handlers; let handler threads end after their current call."""
        for task in self.tasks:
            task.cancel()
        self.slots.cancel()
        self.threads.shutdown()

    async def _all_finished(self) -> None:
        state = self.state
        while state.running:
            state.slot_free.clear()
            await state.slot_free.wait()
        if self.tasks:
            await asyncio.wait(self.tasks)

    def _track(self, coroutine: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _run_async(self, held: Held) -> None:
        handler = self.handlers[held.job.queue]
        try:
            result = encode_result(await handler(held.job.payload, held.context))
        except BaseException as error:  # SystemExit in a handler fails its job, not the worker
            task = asyncio.current_task()
            if isinstance(error, asyncio.CancelledError) and task and task.cancelling():
                raise  # cancelled by the worker: stopping at once, or the grace period is over
            self._finish_one(held, *failure(error))
            return
        self._finish_one(held, result, None, None)

    def _finish_burst(self, posted: list[Posted]) -> None:
        finished = self._finished
        done = [outcome[0] for outcome in posted if finished(*outcome)]
        if done:
            self.outcomes.put_nowait(done)

    def _finish_one(
        self, held: Held, result: str | None, error: str | None, trace: str | None
    ) -> None:
        if self._finished(held, result, error, trace):
            self.outcomes.put_nowait([held])

    def _finished(
        self, held: Held, result: str | None, error: str | None, trace: str | None
    ) -> bool:
        """A handler is done: free its slot; whether its outcome is to be queued now.

        Not when the job is no longer held, or its outcome is stored already (in
        the handler's own transaction), or it waits for a progress report.
        """
        if held.finished:  # failed already (the grace period), or abandoned
            if held.abandoned and not self.runs_async[held.job.queue]:  # a thread's call returned
                self.abandoned_threads -= 1
            return False
        held.finished = True
        held.context.end()
        held.result, held.error, held.traceback = result, error, trace
        state = self.state
        state.running -= 1
        state.slot_free.set()
        if state.waiting:
            self._start_waiting()
        if held.context.settled:  # completed in the handler's own transaction
            if error is not None:
                logger.warning("job %s: completed in its transaction, then failed: %s",
                               held.job.id, error)  # fmt: skip
            state.forget(held)
            return False
        if held.context.reporting:  # its last progress report first, not lost after completion
            self._track(self._queue_after_reports(held))
            return False
        return True

    async def _queue_after_reports(self, held: Held) -> None:
        try:
            await held.context.flushed(PROGRESS_FLUSH_SECONDS)
        finally:
            self.outcomes.put_nowait([held])
