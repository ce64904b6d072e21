"""The maintainer: calls pyqueue.maintain() every maintenance_interval.

What a pass does (expired leases, due schedules, finished jobs and dead letters
past their retention) is SQL's; this part only decides when to call it. It
passes its interval as `every`, so that workers that each call it every
interval make one pass per interval between them, however many they are. A
pass that reached its bounds (`more`) is followed at once by another, so a
backlog of expired rows goes in short transactions one after another.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from pyqueue import queries
from pyqueue.worker.connection import Reconnecting

logger = logging.getLogger("pyqueue.worker")

# Passes run back to back while a backlog lasts, at most this many per interval,
# so that a vast backlog cannot keep one worker's connection busy for good.
MAX_PASSES_IN_A_ROW = 100


class Maintainer:
    """Runs maintenance passes on `db` every `interval` seconds until cancelled."""

    def __init__(self, db: Reconnecting, interval: float) -> None:
        self.db = db
        self.interval = interval
        self._every = timedelta(seconds=interval)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.catch_up()
            except Exception:
                logger.exception("maintenance failed; trying again in %g s", self.interval)

    async def catch_up(self) -> None:
        """One pass if none ran within the interval, then more while a backlog lasts."""
        result = await self.maintain(self._every)
        passes = 1
        while result.get("more") and passes < MAX_PASSES_IN_A_ROW:
            result = await self.maintain(timedelta(0))
            passes += 1

    async def maintain(self, every: timedelta) -> dict[str, Any]:
        rows = await self.db.call(queries.MAINTAIN_EVERY, [every])
        result: dict[str, Any] = rows[0][0]
        done = {k: v for k, v in result.items() if k not in ("ran", "more") and v}
        if result.get("ran") and done:
            logger.info("maintenance: %s", ", ".join(f"{k} {v}" for k, v in done.items()))
        return result
