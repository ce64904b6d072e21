"""`JobContext`: what a handler knows about the job it runs, and its progress report."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pyqueue.errors import InvalidArgument
from pyqueue.jobs import ClaimedJob
from pyqueue.worker.transaction import JobTransaction, TransactionConnections, result_json

logger = logging.getLogger("pyqueue.worker")

# Sends one progress report to the database (pyqueue.report_progress).
ProgressSender = Callable[[ClaimedJob, int, "str | None"], Awaitable[None]]


class JobContext:
    """The second argument of every handler: `handler(payload, job)`.

    id, queue, attempt (1 for the first run) and max_attempts describe the
    job; `progress()` reports how far the handler has got; `transaction()`
    completes the job together with the handler's own writes.
    """

    def __init__(
        self,
        job: ClaimedJob,
        loop: asyncio.AbstractEventLoop,
        send: ProgressSender,
        transactions: TransactionConnections | None = None,
    ) -> None:
        self.id = job.id
        self.queue = job.queue
        self.attempt = job.attempt
        self.max_attempts = job.max_attempts
        self._job = job
        self._loop = loop
        self._send = send
        self._pending: tuple[int, str | None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self.reported = False  # progress() was called: the worker orders the outcome after it
        self._transactions = transactions
        # Completed in a job transaction that committed: the outcome is stored.
        self.settled = False
        # False: the job must fail for good (its payload does not fit the handler).
        self.retryable = True
        self.started = time.monotonic()
        self.ended: float | None = None  # set when the handler returns or raises

    def __repr__(self) -> str:
        return (
            f"JobContext(id={self.id}, queue={self.queue!r}, "
            f"attempt={self.attempt}, max_attempts={self.max_attempts})"
        )

    def progress(self, pct: int, message: str | None = None) -> None:
        """Report progress 0-100 (clamped) and an optional message; best effort.

        Callable from a plain handler's thread or an async handler alike; it
        never blocks and never raises for a database problem. Reports are sent
        in order, and when a handler reports faster than the database answers,
        only the latest one waiting is sent.
        """
        if isinstance(pct, bool) or not isinstance(pct, int):
            raise InvalidArgument(f"progress pct must be an int 0-100, got {pct!r}")
        if message is not None and not isinstance(message, str):
            raise InvalidArgument(f"progress message must be a str or None, got {message!r}")
        self.reported = True
        try:
            running_loop = asyncio.get_running_loop()
        except RuntimeError:
            running_loop = None
        if running_loop is self._loop:
            self._offer(pct, message)
        else:
            # RuntimeError: the worker's loop is closed, it stopped at once.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._offer, pct, message)

    def transaction(self, result: Any = None) -> JobTransaction:
        """A transaction on the worker's database that completes this job when it commits.

        `with job.transaction() as conn:` in a plain handler (a psycopg
        Connection), `async with` in an async one (an AsyncConnection). Write
        the job's effects on `conn`; when the block ends without an exception,
        the job is completed with `result` (JSON) in the same transaction, and
        it commits. If this run no longer holds the job (its lease was lost,
        or it was cancelled or timed out), nothing commits: the transaction
        rolls back and pyqueue.LeaseLost is raised. So the writes land exactly
        once per job however often it runs. Once per run; the handler's return
        value is then not stored.
        """
        if self._transactions is None:
            raise InvalidArgument("job transactions need a worker: this job has no database")
        params = [self.id, self._job.lease_token, result_json(result)]
        return JobTransaction(self, self._transactions, params)

    def _offer(self, pct: int, message: str | None) -> None:
        self._pending = (pct, message)
        if self._flusher is None or self._flusher.done():
            self._flusher = self._loop.create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending is not None:
            pct, message = self._pending
            self._pending = None
            try:
                await self._send(self._job, pct, message)
            except Exception as error:  # best effort: a lost report must not fail the job
                logger.debug("job %s: progress report not stored: %s", self.id, error)

    def end(self) -> None:
        self.ended = time.monotonic()

    @property
    def duration(self) -> float | None:
        """Seconds the handler ran; None until it has returned or raised."""
        return None if self.ended is None else self.ended - self.started

    @property
    def reporting(self) -> bool:
        """Whether a progress report is on its way to the database."""
        return self._flusher is not None and not self._flusher.done()

    async def flushed(self, timeout: float) -> None:
        """Wait (at most `timeout` s) until the reports made so far are stored."""
        if self._flusher is not None and not self._flusher.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._flusher), timeout)
            except TimeoutError:
                logger.debug("job %s: progress report still in flight", self.id)
