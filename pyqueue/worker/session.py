"""One run of a worker: its connections, the jobs it holds, and its tasks.

All of it lives on one asyncio event loop:

- the claimer (`run`): claims due jobs for free handler slots and starts them;
  when the queues are empty it waits for a NOTIFY or the poll interval. While
  handlers run it claims again only once half a batch of slots is free (or
  CLAIM_GATHER_SECONDS after the first one freed up), so that a busy worker
  makes one claim per half batch, not one per finished job. When a full batch
  arrives and slots are free beyond it, the next claim goes out before that
  batch is read and started: one claim in flight at a time, never two;
- the handlers: an `async def` one runs as a task on the loop; a plain one on
  a daemon thread (threads.py), which hands its outcome back with the outcomes
  of the other threads in one loop callback, not one wake-up per job;
- the recorder: stores outcomes, all results of a burst in one complete_batch,
  failures one fail() each;
- the listener: LISTEN pyqueue_jobs on its own connection, waking the claimer;
- the heartbeat and the lease recovery, each on a timer.

Every state change is a call of a SQL function; Python only decides when to
call. Outcomes are stored on a connection of their own, so that storing one
burst overlaps the claim of the next; claims, heartbeats, progress and releases
share another (psycopg runs one statement at a time on each); the listener has
a third. A job's last progress report is stored before its outcome is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg

from pyqueue import queries
from pyqueue.jobs import ClaimedJob
from pyqueue.values import sql_text
from pyqueue.worker.connection import Reconnecting, Stopping
from pyqueue.worker.context import JobContext
from pyqueue.worker.outcome import Held, encode_result, failure
from pyqueue.worker.threads import DaemonThreads

logger = logging.getLogger("pyqueue.worker")

Handler = Callable[[Any, JobContext], Any]
# A claim in flight; its cursor holds the claimed rows, received but not yet read.
Claim = asyncio.Task[psycopg.AsyncCursor[Any]]
# A plain handler's outcome, posted by its thread: (held, result, error, traceback).
Posted = tuple[Held, "str | None", "str | None", "str | None"]

# Outcomes stored per complete_batch call at most.
RECORD_BATCH = 1000
# While handlers run, how long a free slot waits for others before claiming.
CLAIM_GATHER_SECONDS = 0.05
# How long a finished handler waits for its last progress report to be stored.
PROGRESS_FLUSH_SECONDS = 5.0
# After the grace period, how long at least to try storing outcomes and releases.
FINAL_WRITES_SECONDS = 2.0


@dataclass(frozen=True)
class Settings:
    concurrency: int
    batch_size: int
    poll_interval: float
    lease: float
    heartbeat_interval: float
    grace_period: float


def is_async(handler: Handler) -> bool:
    call = getattr(handler, "__call__", None)  # noqa: B004  (async callable objects)
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


class Session:
    """Claims, runs and reports jobs of `queues` until `stopping` is set."""

    def __init__(
        self,
        conninfo: str,
        name: str,
        handlers: dict[str, Handler],
        queues: Sequence[str],
        settings: Settings,
    ) -> None:
        self.name = name
        self.handlers = handlers
        self.queues = list(queues)
        self.settings = settings
        self.lease = timedelta(seconds=settings.lease)
        self.db = Reconnecting(conninfo, f"worker {name}")
        self.outcome_db = Reconnecting(conninfo, f"worker {name} (outcomes)")
        self.listen_db = Reconnecting(conninfo, f"worker {name} (LISTEN)")
        self.stopping = asyncio.Event()  # set by stop(): claim no more
        self.wake = asyncio.Event()  # a job may be due: claim now
        self.slot_free = asyncio.Event()  # a handler finished
        self.held: dict[int, Held] = {}
        self.running = 0  # handlers started and not finished
        # Claim again, while handlers run, once this many slots are free.
        self.enough_free = max(1, min(settings.batch_size, settings.concurrency) // 2)
        self.results: asyncio.Queue[Held] = asyncio.Queue()  # finished, outcome to store
        # Async handlers, and finished jobs waiting for their last progress report.
        self.handler_tasks: set[asyncio.Task[None]] = set()
        self.threads = DaemonThreads(settings.concurrency, "pyqueue-handler", self._run_plain)
        self.runs_async = {queue: is_async(handler) for queue, handler in handlers.items()}
        # Outcomes of plain handlers, posted by their threads, not yet taken by
        # the loop: (held, result, error, traceback).
        self.posted: list[Posted] = []
        self.posted_lock = threading.Lock()
        self.loop = asyncio.get_running_loop()
        self.send_progress = self._send_progress  # bound once, not once per job

    # The claimer, and the whole run around it.

    async def run(self) -> None:
        listening = asyncio.Event()
        helpers = [
            asyncio.create_task(self._listen(listening)),
            asyncio.create_task(self._every(self.settings.heartbeat_interval, self._heartbeat)),
            # claim_batch already recovers expired leases, but a worker whose
            # slots are all busy with long jobs stops claiming: this keeps a dead
            # worker's jobs coming back within lease/2 of expiring regardless.
            asyncio.create_task(self._every(self.settings.lease / 2, self._recover)),
            asyncio.create_task(self._record_outcomes()),
        ]
        try:
            # LISTEN before the first claim, so no enqueue falls between the two.
            await self._wait_any(listening)
            await self._claim_until_stopped()
            await self._finish_running()
        finally:
            for task in [*self.handler_tasks, *helpers]:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self.threads.shutdown()
            for db in (self.db, self.outcome_db, self.listen_db):
                await db.close()

    async def _claim_until_stopped(self) -> None:
        # The next claim, sent as soon as the last one's rows arrive when enough
        # slots are free for both: the database picks and leases it while this
        # loop reads those rows and turns them into running jobs, not after.
        ahead: tuple[int, Claim] | None = None
        try:
            while not self.stopping.is_set():
                if ahead is None:
                    free = await self._free_slots()
                    if free == 0:
                        continue
                    ahead = self._send_claim(min(self.settings.batch_size, free))
                (wanted, claim), ahead = ahead, None
                try:
                    rows = await claim
                except Stopping:
                    break
                except psycopg.Error as error:
                    logger.error("claim failed: %s", error)
                    await self._wait_any(timeout=self.settings.poll_interval)
                    continue
                if self.stopping.is_set():
                    await self._release(await self._read(rows))
                    break
                got = rows.rowcount
                free = self.settings.concurrency - self.running - got
                if got == wanted and free >= self.enough_free:
                    ahead = self._send_claim(min(self.settings.batch_size, free))
                    await asyncio.sleep(0)  # the claim goes out now, not after the starts
                for job in await self._read(rows):
                    self._start(job)
                if got < wanted:  # the queues are drained: idle until woken
                    await self._wait(self.wake, self.settings.poll_interval)
        finally:
            if ahead is not None:
                await self._release_claimed(ahead[1])

    def _send_claim(self, wanted: int) -> tuple[int, Claim]:
        # Cleared before the claim: a NOTIFY arriving during it claims again.
        self.wake.clear()
        return wanted, asyncio.ensure_future(self._claim(wanted))

    async def _release_claimed(self, claim: Claim) -> None:
        """Hand back what a claim still in flight at the stop brings.

        Waited for FINAL_WRITES_SECONDS at most (then cancelled): jobs it
        leased and that are not handed back run again when their lease expires.
        """
        try:
            rows = await asyncio.wait_for(claim, FINAL_WRITES_SECONDS)
        except (TimeoutError, Stopping, psycopg.Error):
            return
        await self._release(await self._read(rows))

    async def _free_slots(self) -> int:
        """Wait for enough_free free slots, or any after CLAIM_GATHER_SECONDS; 0 if stopping."""
        deadline = None
        while not self.stopping.is_set():
            free = self.settings.concurrency - self.running
            if free >= self.enough_free:
                return free
            timeout = None
            if free > 0:
                now = self.loop.time()
                deadline = deadline or now + CLAIM_GATHER_SECONDS
                if now >= deadline:
                    return free
                timeout = deadline - now
            self.slot_free.clear()
            await self._wait(self.slot_free, timeout)
        return 0

    async def _claim(self, size: int) -> psycopg.AsyncCursor[Any]:
        # Rows in binary: a lease token or a timestamp is read in a fraction of
        # the time its text takes to parse (claimed jobs: 4.4 µs a row, not 5.3).
        return await self.db.execute(
            queries.CLAIM,
            [self.queues, self.name, size, self.lease],
            binary=True,
            stopping=self.stopping,
        )

    @staticmethod
    async def _read(rows: psycopg.AsyncCursor[Any]) -> list[ClaimedJob]:
        """The jobs of a claim's rows (already received: no round trip)."""
        return [ClaimedJob(*row) for row in await rows.fetchall()]

    async def _release(self, jobs: list[ClaimedJob]) -> None:
        """Hand back claimed jobs that were never started (not counted as a run)."""
        if not jobs:
            return
        ids = [j.id for j in jobs]
        try:
            await asyncio.wait_for(
                self.db.call(queries.HAND_BACK, [ids, [j.lease_token for j in jobs]]),
                FINAL_WRITES_SECONDS,
            )
            logger.info("released %d job(s) not started: %s", len(ids), ids)
        except (TimeoutError, psycopg.Error) as error:
            logger.warning(
                "could not release jobs %s (%s): they run again when their lease expires",
                ids,
                str(error) or "timeout",
            )

    def stop(self) -> None:
        """Claim no more; wake the claimer wherever it waits."""
        for event in (self.stopping, self.wake, self.slot_free):
            event.set()

    @staticmethod
    async def _wait(event: asyncio.Event, timeout: float | None = None) -> None:
        """Until `event` is set (stop() sets those the claimer waits for) or `timeout` passes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    async def _wait_any(self, *events: asyncio.Event, timeout: float | None = None) -> None:
        """Until one of `events` or `stopping` is set, or `timeout` seconds pass."""
        waiters = [asyncio.create_task(e.wait()) for e in (*events, self.stopping)]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _finish_running(self) -> None:
        """After a stop request: let handlers finish within the grace period."""
        grace = self.settings.grace_period
        if self.running or self.handler_tasks:
            logger.info(
                "stopping: waiting up to %g s for %d running handler(s)", grace, self.running
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_finished(), grace)
            late = list(self.handler_tasks)
            for task in late:
                task.cancel()
            if late:  # so that the outcomes they hold are queued before the last writes
                await asyncio.wait(late, timeout=FINAL_WRITES_SECONDS)
            unfinished = [h for h in self.held.values() if not h.finished]
            if unfinished:
                logger.warning(
                    "grace period of %g s over: failing jobs %s whose handlers still run",
                    grace,
                    [h.job.id for h in unfinished],
                )
            for held in unfinished:
                held.finished = True
                held.error = (
                    f"the worker stopped before the handler finished (grace period {grace} s)"
                )
                self.running -= 1
                self.results.put_nowait(held)
        try:
            await asyncio.wait_for(self.results.join(), FINAL_WRITES_SECONDS)
        except TimeoutError:
            logger.warning(
                "could not store the outcomes of jobs %s: they run again when their lease expires",
                sorted(self.held),
            )

    async def _all_finished(self) -> None:
        while self.running:
            self.slot_free.clear()
            await self.slot_free.wait()
        if self.handler_tasks:
            await asyncio.wait(self.handler_tasks)

    # Running handlers.

    def _start(self, job: ClaimedJob) -> None:
        held = Held(job, JobContext(job, self.loop, self.send_progress))
        self.held[job.id] = held
        self.running += 1
        if self.runs_async[job.queue]:
            self._track(self._run_async(held))
        else:
            self.threads.submit(held)

    def _track(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.handler_tasks.add(task)
        task.add_done_callback(self.handler_tasks.discard)

    async def _run_async(self, held: Held) -> None:
        handler = self.handlers[held.job.queue]
        try:
            result = encode_result(await handler(held.job.payload, held.context))
        except BaseException as error:  # SystemExit in a handler fails its job, not the worker
            task = asyncio.current_task()
            if isinstance(error, asyncio.CancelledError) and task and task.cancelling():
                raise  # cancelled by the worker: stopping at once, or the grace period is over
            self._finished(held, *failure(error))
            return
        self._finished(held, result, None, None)

    def _run_plain(self, held: Held) -> None:
        """On a handler thread: run the handler, post its outcome to the loop."""
        handler = self.handlers[held.job.queue]
        try:
            posted: Posted = (
                held,
                encode_result(handler(held.job.payload, held.context)),
                None,
                None,
            )
        except BaseException as error:
            posted = (held, *failure(error))
        if held.context.reported:
            # After its progress reports, which took this same way to the loop.
            self._call_on_loop(self._finished, *posted)
            return
        with self.posted_lock:
            self.posted.append(posted)
            first = len(self.posted) == 1  # else _take_posted is already due
        if first:
            self._call_on_loop(self._take_posted)

    def _call_on_loop(self, callback: Callable[..., object], *args: Any) -> None:
        """From a handler thread; once a burst, not once a job (a `with` costs 0.3 µs)."""
        # RuntimeError: the loop is closed, the worker stopped at once.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(callback, *args)

    def _take_posted(self) -> None:
        with self.posted_lock:
            posted, self.posted = self.posted, []
        for held, result, error, trace in posted:
            self._finished(held, result, error, trace)

    def _finished(
        self, held: Held, result: str | None, error: str | None, trace: str | None
    ) -> None:
        """A handler is done: free its slot and queue its outcome for storing."""
        if held.finished:  # failed already, at the end of the grace period
            return
        held.finished = True
        held.result, held.error, held.traceback = result, error, trace
        self.running -= 1
        self.slot_free.set()
        if held.context.reporting:  # its last progress report first, not lost after completion
            self._track(self._queue_after_reports(held))
        else:
            self.results.put_nowait(held)

    async def _queue_after_reports(self, held: Held) -> None:
        try:
            await held.context.flushed(PROGRESS_FLUSH_SECONDS)
        finally:
            self.results.put_nowait(held)

    async def _send_progress(self, job: ClaimedJob, pct: int, message: str | None) -> None:
        text = None if message is None else sql_text(message)
        await self.db.call(
            queries.REPORT_PROGRESS, [job.id, job.lease_token, pct, text], retry=False
        )

    # Storing outcomes.

    async def _record_outcomes(self) -> None:
        while True:
            batch = [await self.results.get()]
            while not self.results.empty() and len(batch) < RECORD_BATCH:
                batch.append(self.results.get_nowait())
            try:
                await self._record([h for h in batch if h.error is None])
                for held in batch:
                    if held.error is not None:
                        await self._record_failure(held)
            except Exception:
                logger.exception(
                    "could not store outcomes of jobs %s: they run again when their lease expires",
                    [h.job.id for h in batch],
                )
                for held in batch:
                    self._forget(held)
            finally:
                for _ in batch:
                    self.results.task_done()

    async def _record(self, successes: list[Held]) -> None:
        """complete_batch for all of them; one by one if the database refuses a result."""
        if not successes:
            return
        results = [h.result for h in successes]
        try:
            rows = await self.outcome_db.call(
                queries.COMPLETE,
                [
                    [h.job.id for h in successes],
                    [h.job.lease_token for h in successes],
                    None if all(r is None for r in results) else results,
                ],
            )
        except psycopg.DataError as error:
            if len(successes) > 1:
                for held in successes:
                    await self._record([held])
                return
            held = successes[0]
            held.error = sql_text(f"the database refused the handler's result: {error}")
            await self._record_failure(held)
            return
        completed = {row[0] for row in rows}
        for held in successes:
            if held.job.id not in completed:
                self._log_lost(held, "its result was not stored")
            self._forget(held)

    async def _record_failure(self, held: Held) -> None:
        job = held.job
        rows = await self.outcome_db.call(
            queries.FAIL, [job.id, job.lease_token, held.error, held.traceback]
        )
        status = rows[0][0]
        if status == "lost":
            self._log_lost(held, "its failure was not stored")
        elif status == "dead":
            logger.warning(
                "job %s (%s) failed on attempt %s of %s and is dead-lettered: %s",
                job.id,
                job.queue,
                job.attempt,
                job.max_attempts,
                held.error,
            )
        else:
            logger.warning(
                "job %s (%s) failed on attempt %s of %s, will be retried: %s",
                job.id,
                job.queue,
                job.attempt,
                job.max_attempts,
                held.error,
            )
        self._forget(held)

    def _forget(self, held: Held) -> None:
        if self.held.get(held.job.id) is held:
            del self.held[held.job.id]

    @staticmethod
    def _log_lost(held: Held, consequence: str) -> None:
        level = logging.DEBUG if held.lost else logging.WARNING  # warned at the heartbeat
        logger.log(
            level,
            "job %s (%s) was lost (cancelled, or its lease expired and it was recovered): %s",
            held.job.id,
            held.job.queue,
            consequence,
        )

    # Timers and the listener.

    async def _every(self, interval: float, action: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await action()
            except Exception:
                logger.exception("%s failed", getattr(action, "__name__", action))

    async def _heartbeat(self) -> None:
        """Extend the leases of every job held, and log the ones found lost."""
        holding = [h for h in self.held.values() if not h.lost]
        if not holding:
            return
        rows = await self.db.call(
            queries.EXTEND_LEASES,
            [[h.job.id for h in holding], [h.job.lease_token for h in holding], self.lease],
        )
        kept = {row[0] for row in rows}
        for held in holding:
            # A job whose outcome was stored meanwhile is missing too; not lost.
            if held.job.id not in kept and not held.finished and self.held.get(held.job.id):
                held.lost = True
                logger.warning(
                    "job %s (%s) was lost while its handler runs (cancelled, or "
                    "its lease expired and it was recovered): its outcome will "
                    "not be stored",
                    held.job.id,
                    held.job.queue,
                )

    async def _recover(self) -> None:
        rows = await self.db.call(queries.RECOVER_EXPIRED)
        if rows and rows[0][0]:
            logger.info("recovered %s job(s) whose lease had expired", rows[0][0])

    async def _listen(self, listening: asyncio.Event) -> None:
        """Wake the claimer on every NOTIFY for one of our queues, for ever."""
        wanted = set(self.queues)
        while True:
            conn = await self.listen_db.connect()
            try:
                await conn.execute(queries.LISTEN_JOBS)
                listening.set()
                self.wake.set()  # jobs may have come while nobody listened
                async for note in conn.notifies():
                    if note.payload in wanted:
                        self.wake.set()
            except psycopg.Error as error:
                if conn.closed:
                    self.listen_db.lost(error)
                else:
                    logger.error("LISTEN failed: %s", error)
                    await asyncio.sleep(self.settings.poll_interval)
