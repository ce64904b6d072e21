"""The typed shapes of jobs as the SQL API returns them."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Job:
    """One row of the `pyqueue.all_jobs` view: a job, live or dead-lettered.

    status is one of pending, running, completed, cancelled, dead (the
    `pyqueue.job_statuses` view says what each means); a retry waiting for its
    turn is pending with `error` set. `finished` is true once the job will not
    run again. `actions` are what an operator may do to it now ('cancel',
    'retry'), as SQL's `job_actions()` says.
    """

    id: int
    queue: str
    status: str
    payload: Any
    priority: int
    attempt: int
    max_attempts: int
    run_at: datetime | None
    progress: int | None
    progress_message: str | None
    result: Any
    error: str | None
    traceback: str | None
    idempotency_key: str | None
    worker: str | None
    locked_until: datetime | None
    created_at: datetime
    started_at: datetime | None
    failed_at: datetime | None
    finished_at: datetime | None
    retried_as: int | None
    finished: bool
    actions: list[str]


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One row of `pyqueue.job_summaries(...)`: a job as a listing shows it.

    The columns of Job without payload, result, traceback and lease, with
    `error` cut to its first line (at most 200 characters): a page of these
    costs the same whatever the jobs carry.
    """

    id: int
    queue: str
    status: str
    priority: int
    attempt: int
    max_attempts: int
    run_at: datetime | None
    progress: int | None
    progress_message: str | None
    error: str | None
    idempotency_key: str | None
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    retried_as: int | None
    finished: bool


@dataclass(frozen=True, slots=True)
class Schedule:
    """One row of the `pyqueue.schedules` view: a cron schedule and its last tick."""

    name: str
    cron: str
    tz: str
    queue: str
    payload: Any
    priority: int
    max_attempts: int | None
    next_run_at: datetime
    last_run_at: datetime | None  # the last tick fired
    last_job_id: int | None  # the job it made


class FailOutcome(enum.Enum):
    """What became of a job whose failure was recorded (SQL's `fail_outcome`)."""

    PENDING = "pending"  # to be retried after its backoff
    DEAD = "dead"  # out of attempts: dead-lettered
    LOST = "lost"  # no longer the worker's: nothing was recorded


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job leased to a worker by a claim (queries.CLAIM), field for field.

    lease_token is the fencing value that complete, fail, heartbeat and progress
    calls must present.
    """

    id: int
    queue: str
    payload: Any
    attempt: int
    max_attempts: int
    lease_token: uuid.UUID
    locked_until: datetime
