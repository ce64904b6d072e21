"""What became of each job, told to the log and to the worker's metrics.

Every line about a job carries the same fields in `extra`, so that a JSON log
formatter emits them as fields of their own (README: JSON logs):

    job_id, queue, attempt, max_attempts, duration (seconds the handler ran,
    None when it did not finish), outcome: completed, retry (failed, to run
    again after its backoff), dead (dead-lettered), lost (no longer this
    worker's: cancelled, or its lease expired and it was recovered).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pyqueue.worker.outcome import Held

if TYPE_CHECKING:
    from pyqueue.worker.metrics import WorkerMetrics

logger = logging.getLogger("pyqueue.worker")

COMPLETED, RETRY, DEAD, LOST = "completed", "retry", "dead", "lost"


def job_fields(held: Held, outcome: str) -> dict[str, Any]:
    """The structured fields of a line about this job."""
    job = held.job
    return {
        "job_id": job.id,
        "queue": job.queue,
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "duration": held.context.duration,
        "outcome": outcome,
    }


class JobLog:
    """Logs each stored outcome (and counts it in the metrics, when the worker has them)."""

    def __init__(self, metrics: WorkerMetrics | None = None) -> None:
        self.metrics = metrics

    def completed(self, completed: list[Held]) -> None:
        """Jobs completed in one burst (asked of the logger once, not once a job)."""
        if self.metrics is not None:
            for held in completed:
                self.metrics.handled(held, COMPLETED)
        if not logger.isEnabledFor(logging.INFO):
            return
        for held in completed:
            fields = job_fields(held, COMPLETED)
            logger.info(
                "job %s (%s) completed in %.3f s",
                held.job.id,
                held.job.queue,
                fields["duration"] or 0.0,
                extra=fields,
            )

    def failed(self, held: Held, dead: bool) -> None:
        outcome = DEAD if dead else RETRY
        if self.metrics is not None:
            self.metrics.handled(held, outcome)
        job = held.job
        fate = " and is dead-lettered" if dead else ", will be retried"
        logger.warning(
            "job %s (%s) failed on attempt %s of %s%s: %s",
            job.id,
            job.queue,
            job.attempt,
            job.max_attempts,
            fate,
            held.error,
            extra=job_fields(held, outcome),
        )

    def lost(self, held: Held, consequence: str) -> None:
        if self.metrics is not None:
            self.metrics.handled(held, LOST)
        level = logging.DEBUG if held.lost else logging.WARNING  # warned at the heartbeat
        logger.log(
            level,
            "job %s (%s) was lost (cancelled, or its lease expired and it was recovered): %s",
            held.job.id,
            held.job.queue,
            consequence,
            extra=job_fields(held, LOST),
        )
