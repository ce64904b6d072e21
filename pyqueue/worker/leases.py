"""The lease keeper: extends the leases of the jobs held, and recovers expired ones.

Every heartbeat_interval it extends the lease of every job the worker holds,
running or waiting for its outcome to be stored, and marks (and logs once) the
jobs SQL says are no longer held. Every lease/2 it recovers expired leases of
any worker: the claim does that too, but a worker whose slots are all busy
with long jobs stops claiming, and a dead worker's jobs must still come back
within about half a lease of expiring.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from pyqueue import queries
from pyqueue.worker.connection import Reconnecting
from pyqueue.worker.outcome import Held
from pyqueue.worker.state import State

logger = logging.getLogger("pyqueue.worker")


class LeaseKeeper:
    """Heartbeats the jobs in `state.held` on `db`; recovers expired leases."""

    def __init__(
        self,
        db: Reconnecting,
        state: State,
        *,
        lease: float,
        heartbeat_interval: float,
        on_lost: Callable[[Held], None],
    ) -> None:
        self.db = db
        self.state = state
        self.on_lost = on_lost
        self.lease = lease
        self.heartbeat_interval = heartbeat_interval
        self._lease = timedelta(seconds=lease)

    async def run(self) -> None:
        """Both timers, until cancelled."""
        await asyncio.gather(
            every(self.heartbeat_interval, self.heartbeat),
            every(self.lease / 2, self.recover),
        )

    async def heartbeat(self) -> None:
        """Extend the lease of every job held; the ones found lost are logged and
        handed to `on_lost` (which stops waiting for their handlers)."""
        held = self.state.held
        # A job completed in its handler's transaction is no longer leased.
        holding = [h for h in held.values() if not (h.lost or h.context.settled)]
        if not holding:
            return
        rows = await self.db.call(
            queries.EXTEND_LEASES,
            [
                [h.job.id for h in holding],
                [h.job.lease_token for h in holding],
                self._lease,
            ],
        )
        kept = {row[0] for row in rows}
        for h in holding:
            # A job whose outcome was stored meanwhile is missing too; not lost.
            if (
                h.job.id not in kept
                and not (h.finished or h.context.settled)
                and held.get(h.job.id)
            ):
                h.lost = True
                logger.warning(
                    "job %s (%s) was lost while its handler runs (timed out, cancelled, "
                    "or its lease expired and it was recovered): its outcome will not be "
                    "stored, and the worker no longer waits for it",
                    h.job.id,
                    h.job.queue,
                )
                self.on_lost(h)

    async def recover(self) -> int:
        """Recover every expired lease (any worker's); return how many jobs."""
        rows = await self.db.call(queries.RECOVER_EXPIRED)
        recovered = int(rows[0][0]) if rows and rows[0][0] else 0
        if recovered:
            logger.info("recovered %s job(s) whose lease had expired", recovered)
        return recovered


async def every(interval: float, action: Callable[[], Awaitable[object]]) -> None:
    """Call `action` every `interval` seconds, logging its failures, until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            await action()
        except Exception:
            logger.exception("%s failed", getattr(action, "__name__", action))
