"""The completer: stores the outcomes the executor queues, a burst at a time.

Whatever finished while the last burst was being stored makes the next burst:
its successes in one statement, its failures after them. The completer has a
connection of its own, so that storing one burst overlaps the claim of the
next. A job whose lease was taken over meanwhile is refused by SQL (fencing by
lease token); the completer only logs it.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg

from pyqueue import queries
from pyqueue.jobs import FailOutcome
from pyqueue.values import sql_text
from pyqueue.worker.connection import Reconnecting
from pyqueue.worker.joblog import JobLog
from pyqueue.worker.outcome import Held, Outcomes
from pyqueue.worker.state import State

logger = logging.getLogger("pyqueue.worker")

# Outcomes stored per burst, so that one statement stays of bounded size: once
# a burst has this many, it takes no more lists from the queue.
BURST = 1000


class Completer:
    """Takes outcomes from `outcomes` and stores them on `db` until cancelled."""

    def __init__(
        self,
        db: Reconnecting,
        state: State,
        outcomes: Outcomes,
        log: JobLog | None = None,
    ) -> None:
        self.db = db
        self.state = state
        self.outcomes = outcomes
        self.log = JobLog() if log is None else log

    async def run(self) -> None:
        outcomes = self.outcomes
        while True:
            burst = await outcomes.get()
            taken = 1
            while not outcomes.empty() and len(burst) < BURST:
                burst += outcomes.get_nowait()
                taken += 1
            try:
                await self.store(burst)
            except Exception:
                logger.exception(
                    "could not store outcomes of jobs %s: they run again when their lease expires",
                    [h.job.id for h in burst],
                )
                for held in burst:
                    self.state.forget(held)
            finally:
                for _ in range(taken):
                    outcomes.task_done()

    async def store(self, burst: list[Held]) -> None:
        """Store a burst of outcomes: the successes together, then the failures."""
        failures = [h for h in burst if h.error is not None]
        refused = await self.complete([h for h in burst if h.error is None])
        await self.fail(failures + refused)

    async def drained(self, timeout: float) -> None:
        """Wait until every outcome queued so far is stored, or `timeout` seconds."""
        try:
            await asyncio.wait_for(self.outcomes.join(), timeout)
        except TimeoutError:
            logger.warning(
                "could not store the outcomes of jobs %s: they run again when their lease expires",
                sorted(self.state.held),
            )

    async def complete(self, successes: list[Held]) -> list[Held]:
        """Store these results in one statement; return the jobs whose result was refused.

        When the database refuses one result, the statement is tried job by job to
        find it; a refused result becomes that job's error.
        """
        if not successes:
            return []
        results = [h.result for h in successes]
        try:
            rows = await self.db.call(
                queries.COMPLETE,
                [
                    [h.job.id for h in successes],
                    [h.job.lease_token for h in successes],
                    None if all(r is None for r in results) else results,
                ],
            )
        except psycopg.DataError as error:
            if len(successes) == 1:
                held = successes[0]
                held.error = sql_text(f"the database refused the handler's result: {error}")
                return [held]
            return [refused for held in successes for refused in await self.complete([held])]
        stored = {row[0] for row in rows}
        self.log.completed([h for h in successes if h.job.id in stored])
        forget = self.state.forget
        for held in successes:
            if held.job.id not in stored:
                self.log.lost(held, "its result was not stored")
            forget(held)
        return []

    async def fail(self, failures: list[Held]) -> None:
        """Record these failures in one statement: each job is retried later,
        dead-lettered, or found lost."""
        if not failures:
            return
        retryable = [h.context.retryable for h in failures]
        rows = await self.db.call(
            queries.FAIL_BATCH,
            [
                [h.job.id for h in failures],
                [h.job.lease_token for h in failures],
                [h.error for h in failures],
                [h.traceback for h in failures],
                None if all(retryable) else retryable,
            ],
        )
        for held, (_, outcome) in zip(failures, rows, strict=True):
            self.log_failure(held, FailOutcome(outcome))
            self.state.forget(held)

    def log_failure(self, held: Held, outcome: FailOutcome) -> None:
        """Log a stored failure by what SQL made of the job."""
        if outcome is FailOutcome.LOST:
            self.log.lost(held, "its failure was not stored")
        else:
            self.log.failed(held, dead=outcome is FailOutcome.DEAD)
