"""The claimer: leases due jobs for the worker's slots and hands each to the executor.

It claims for the room under the bounds on jobs held (state.py): jobs for idle
slots, and up to `prefetch` more that wait in memory, so that a freed slot
starts its next job without a round trip. The bounds keep a busy worker from
hoarding what an idle one could run. After a claim comes back short (the
queues are drained, or SQL refused jobs ahead because a queue has a fleet-wide
limit) it claims only for idle slots, as with prefetch 0, until a claim comes
back full.

While handlers run it claims again only once `enough` jobs can be claimed, or
CLAIM_GATHER_SECONDS after the first one can: a busy worker claims in batches,
not job by job. When a full batch arrives and room is left beyond it, the next
claim is sent before that batch is read and started, so that the database
leases it while this loop starts the last one. One claim in flight at a time,
never two: two would skip each other's locked rows and split what one claim
would take. When the queues are drained it waits for a wake-up (NOTIFY) or
poll_interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import psycopg

from pyqueue import queries
from pyqueue.jobs import ClaimedJob
from pyqueue.worker.connection import Reconnecting, Stopping
from pyqueue.worker.state import State, wait_any, wait_for

logger = logging.getLogger("pyqueue.worker")

# A claim in flight; its cursor holds the claimed rows, received but not yet read.
Claim = asyncio.Task[psycopg.AsyncCursor[Any]]
# A claim sent: (jobs asked for, how many of them ahead of idle slots, the claim).
Sent = tuple[int, int, Claim]

# While handlers run, how long a free slot waits for others before claiming.
CLAIM_GATHER_SECONDS = 0.05
# At a stop, how long to wait for a claim in flight and for handing jobs back;
# jobs not handed back by then run again when their lease expires.
HAND_BACK_SECONDS = 2.0


class Claimer:
    """Claims jobs of `queues` as `name` and passes each to `start`, until stopping."""

    def __init__(
        self,
        db: Reconnecting,
        state: State,
        start: Callable[[ClaimedJob], None],
        *,
        queues: Sequence[str],
        name: str,
        batch_size: int,
        lease: float,
        poll_interval: float,
        on_claim: Callable[[int], None] | None = None,
    ) -> None:
        self.db = db
        self.on_claim = on_claim  # told how many jobs each claim leased (metrics)
        self.state = state
        self.start = start
        self.queues = list(queues)
        self.name = name
        self.batch_size = batch_size
        self.lease = timedelta(seconds=lease)
        self.poll_interval = poll_interval
        # Whether claims go beyond the idle slots (see the module's docstring).
        self.prefetching = state.capacity > state.concurrency
        self.claim_ahead = self.prefetching
        self.enough_now = max(1, min(batch_size, state.concurrency) // 2)
        self.enough_ahead = max(1, min(batch_size, state.capacity) // 2)
        # When claim_wait last said a NOTIFY may bring work (loop time).
        self.notify_may_help_at = -float("inf")

    async def run(self) -> None:
        """Claim and start jobs until the state says stopping; hand back what comes after."""
        state = self.state
        next_claim: Sent | None = None
        try:
            while not state.stopping.is_set():
                if next_claim is None:
                    wanted = await self.room_to_claim()
                    if wanted == 0:
                        continue
                    next_claim = self._send(wanted)
                (wanted, ahead, claim), next_claim = next_claim, None
                try:
                    rows = await claim
                except Stopping:
                    break
                except psycopg.Error as error:
                    logger.error("claim failed: %s", error)
                    await wait_any(state.stopping, timeout=self.poll_interval)
                    continue
                if state.stopping.is_set():
                    await self.hand_back(await read(rows))
                    break
                got = rows.rowcount
                if self.on_claim is not None:
                    self.on_claim(got)
                self.claim_ahead = self.prefetching and got == wanted
                more = self.claimable(arriving=got)
                if got == wanted and more >= self.enough:
                    next_claim = self._send(more, arriving=got)
                    await asyncio.sleep(0)  # the claim goes out now, not after the starts
                for job in await read(rows):
                    self.start(job)
                if got < wanted - ahead:  # fewer than the idle slots asked: drained
                    if got == 0:
                        await self.idle()
                    else:
                        await wait_for(state.wake, self.poll_interval)
        finally:
            if next_claim is not None:
                await self._hand_back_in_flight(next_claim[2])

    @property
    def enough(self) -> int:
        """Claim, while handlers run, once this many jobs can be claimed."""
        return self.enough_ahead if self.claim_ahead else self.enough_now

    def claimable(self, arriving: int = 0) -> int:
        """How many jobs to claim, at most batch_size, with `arriving` claimed but not started."""
        state = self.state
        room = state.room - arriving
        if not self.claim_ahead:
            room = min(room, state.idle_slots - arriving)
        return max(0, min(self.batch_size, room))

    async def claim(self, size: int, ahead: int = 0) -> psycopg.AsyncCursor[Any]:
        """Lease up to `size` due jobs, `ahead` of them beyond the idle slots (none from
        a limited queue); their rows are received, not yet read (see `read`)."""
        return await self.db.execute(
            queries.CLAIM,
            [self.queues, self.name, size, self.lease, ahead],
            binary=True,
            stopping=self.state.stopping,
        )

    async def idle(self) -> None:
        """After a claim that found nothing: wait for a wake-up, or for budget.

        When every queue is held back by a flow limit or a pause, a NOTIFY from
        enqueue brings nothing claimable: wait the time SQL says budget returns
        (poll_interval at most), not for wake-ups. Asked at most once a poll
        interval while the answer is "wake-ups help", so that an idle worker of
        queues without limits pays no round trip per wake-up.
        """
        now = asyncio.get_running_loop().time()
        if now - self.notify_may_help_at < self.poll_interval:
            await wait_for(self.state.wake, self.poll_interval)
            return
        try:
            row = await (
                await self.db.execute(
                    queries.CLAIM_WAIT, [self.queues], stopping=self.state.stopping
                )
            ).fetchone()
        except psycopg.Error as error:
            logger.error("claim_wait failed: %s", error)
            row = None
        except Stopping:
            return
        if row is None or row[0] is None:
            self.notify_may_help_at = now
            await wait_for(self.state.wake, self.poll_interval)
            return
        await wait_any(self.state.stopping, timeout=min(row[0].total_seconds(), self.poll_interval))

    async def room_to_claim(self) -> int:
        """Wait until `enough` jobs can be claimed, or any after CLAIM_GATHER_SECONDS;
        how many (0 if stopping)."""
        state = self.state
        loop = asyncio.get_running_loop()
        deadline = None
        while not state.stopping.is_set():
            wanted = self.claimable()
            if wanted >= self.enough:
                return wanted
            timeout = None
            if wanted > 0:
                now = loop.time()
                deadline = deadline or now + CLAIM_GATHER_SECONDS
                if now >= deadline:
                    return wanted
                timeout = deadline - now
            state.slot_free.clear()
            await wait_for(state.slot_free, timeout)
        return 0

    async def hand_back(self, jobs: list[ClaimedJob]) -> None:
        """Return claimed jobs that were never started (their attempt is not counted)."""
        if not jobs:
            return
        ids = [j.id for j in jobs]
        try:
            await asyncio.wait_for(
                self.db.call(queries.HAND_BACK, [ids, [j.lease_token for j in jobs]]),
                HAND_BACK_SECONDS,
            )
            logger.info("released %d job(s) not started: %s", len(ids), ids)
        except (TimeoutError, psycopg.Error) as error:
            logger.warning(
                "could not release jobs %s (%s): they run again when their lease expires",
                ids,
                str(error) or "timeout",
            )

    def _send(self, wanted: int, arriving: int = 0) -> Sent:
        # Cleared before the claim: a NOTIFY arriving during it claims again.
        self.state.wake.clear()
        ahead = wanted - min(wanted, max(0, self.state.idle_slots - arriving))
        return wanted, ahead, asyncio.ensure_future(self.claim(wanted, ahead))

    async def _hand_back_in_flight(self, claim: Claim) -> None:
        try:
            rows = await asyncio.wait_for(claim, HAND_BACK_SECONDS)
        except (TimeoutError, Stopping, psycopg.Error):
            return
        await self.hand_back(await read(rows))


async def read(rows: psycopg.AsyncCursor[Any]) -> list[ClaimedJob]:
    """The jobs of a claim's rows (already received: no round trip)."""
    return [ClaimedJob(*row) for row in await rows.fetchall()]
