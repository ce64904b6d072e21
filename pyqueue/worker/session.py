"""One run of a worker: its parts, the connections they use, and the order of the stop.

    Listener ──wake──► Claimer ──start(job)──► Executor ──outcomes queue──► Completer
                          │                       │                           │
                          └────── State: jobs held, free slots, stopping ─────┘
                                                  ▲
                                            LeaseKeeper

A job travels: claimed by the Claimer (for an idle slot, or ahead of the
slots within the prefetch bound), started by the Executor in a slot (at
once, or when one frees up), its handler's outcome queued to the Completer,
which stores it and forgets the job; the LeaseKeeper extends its lease all
the while. At a stop, the jobs not started are handed back. The parts
meet only in State and in the outcomes queue, and all run on one event loop.

Connections: the completer has one of its own, so that storing one burst
overlaps the next claim; the claimer, the lease keeper and progress reports
share another (psycopg runs one statement at a time on each); the listener
has a third; the maintainer, when maintenance is on, a fourth, so that a long
pass delays no claim.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence

from pyqueue.worker.claimer import Claimer
from pyqueue.worker.completer import Completer
from pyqueue.worker.connection import Reconnecting
from pyqueue.worker.executor import Executor, Handler
from pyqueue.worker.joblog import JobLog
from pyqueue.worker.leases import LeaseKeeper
from pyqueue.worker.listener import Listener
from pyqueue.worker.maintainer import Maintainer
from pyqueue.worker.metrics import WorkerMetrics
from pyqueue.worker.outcome import Outcomes
from pyqueue.worker.settings import Settings
from pyqueue.worker.state import State, wait_any

# After the grace period, how long at least to try storing the outcomes left.
FINAL_WRITES_SECONDS = 2.0


class Session:
    """Claims, runs and reports jobs of `queues` until stop()."""

    def __init__(
        self,
        conninfo: str,
        name: str,
        handlers: dict[str, Handler],
        queues: Sequence[str],
        settings: Settings,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.state = State(settings.concurrency, settings.prefetch)

        def connection(role: str) -> Reconnecting:
            # role names the connection in logs and in the reconnects metric.
            label = f"worker {name}" if role == "main" else f"worker {name} ({role})"
            told = None if metrics is None else functools.partial(metrics.reconnected, role)
            return Reconnecting(conninfo, label, told)

        self.db = connection("main")
        self.outcome_db = connection("outcomes")
        self.listen_db = connection("LISTEN")
        outcomes: Outcomes = asyncio.Queue()
        self.executor = Executor(
            handlers, self.state, outcomes, self.db, settings.max_abandoned_threads
        )
        self.completer = Completer(self.outcome_db, self.state, outcomes, JobLog(metrics))
        self.claimer = Claimer(
            self.db,
            self.state,
            self.executor.start,
            queues=queues,
            name=name,
            batch_size=settings.batch_size,
            lease=settings.lease,
            poll_interval=settings.poll_interval,
            on_claim=None if metrics is None else metrics.claim,
        )
        self.lease_keeper = LeaseKeeper(
            self.db,
            self.state,
            lease=settings.lease,
            heartbeat_interval=settings.heartbeat_interval,
            on_lost=self.executor.abandon,
        )
        self.listener = Listener(self.listen_db, self.state, queues, settings.poll_interval)
        # Its own connection: a pass may take a while, and claims must not wait for it.
        self.maintenance_db = connection("maintenance")
        self.maintainer = (
            None
            if settings.maintenance_interval is None
            else Maintainer(self.maintenance_db, settings.maintenance_interval)
        )

    @property
    def stopping(self) -> asyncio.Event:
        return self.state.stopping

    def stop(self) -> None:
        """Claim no more; running handlers may finish within the grace period."""
        self.state.stop()

    async def run(self) -> None:
        # The parts that run beside the claimer for the whole run.
        parts = (self.listener, self.lease_keeper, self.completer, self.maintainer)
        beside = [asyncio.create_task(part.run()) for part in parts if part is not None]
        try:
            # LISTEN before the first claim, so no enqueue falls between the two.
            await wait_any(self.listener.listening, self.state.stopping)
            await self.claimer.run()
            await self.claimer.hand_back(self.executor.take_waiting())
            await self.executor.finish(self.settings.grace_period)
            await self.completer.drained(FINAL_WRITES_SECONDS)
        finally:
            self.executor.close()
            await self.executor.transactions.close()
            for task in beside:
                task.cancel()
            await asyncio.gather(*beside, return_exceptions=True)
            for db in (self.db, self.outcome_db, self.listen_db, self.maintenance_db):
                await db.close()
