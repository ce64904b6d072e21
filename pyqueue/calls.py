"""The statement and parameters of each client call, shared by Queue and AsyncQueue.

Each function checks and encodes its arguments and returns a `Call`: one named
statement of queries.py and its parameters. The two clients only run it, on a
blocking or an asyncio connection, and read its row; neither holds SQL text or
argument rules of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from pyqueue import queries
from pyqueue.errors import InvalidPayload
from pyqueue.values import check_queue_text, sql_int, to_json


class Call(NamedTuple):
    query: str
    params: list[Any]


def enqueue(
    queue: str,
    payload: Any,
    run_at: datetime | None,
    delay: timedelta | None,
    priority: int,
    max_attempts: int | None,
    idempotency_key: str | None,
    timeout: timedelta | None,
    unique_mode: str | None = None,
    unique_period: timedelta | None = None,
) -> Call:
    """Add one job. Returns one row: (id,)."""
    check_queue_text(queue)
    document = to_json(payload)
    if (
        run_at is None
        and delay is None
        and priority == 0
        and max_attempts is None
        and idempotency_key is None
        and timeout is None
        and unique_mode is None
        and unique_period is None
    ):
        # The everyday call, a queue and a payload: a constant query, built
        # by nobody, so that the client's share of an enqueue stays small.
        return Call(queries.ENQUEUE, [queue, document])
    options: dict[str, Any] = {
        "run_at": run_at,
        "delay": delay,
        "max_attempts": sql_int("max_attempts", max_attempts),
        "idempotency_key": idempotency_key,
        "timeout": timeout,
        "unique_mode": unique_mode,
        "unique_period": unique_period,
    }
    # Only the options given are sent, by name, so that SQL's defaults apply.
    given = {name: value for name, value in options.items() if value is not None}
    if priority != 0:  # None too: the database refuses it, naming it
        given["priority"] = sql_int("priority", priority)
    return Call(queries.enqueue_with_options(given), [queue, document, *given.values()])


def enqueue_many(
    queue: str,
    payloads: Sequence[Any],
    run_at: datetime | None,
    delay: timedelta | None,
    priority: int,
    max_attempts: int | None,
    idempotency_keys: Sequence[str | None] | None,
    timeout: timedelta | None,
    unique_mode: str | None = None,
    unique_period: timedelta | None = None,
) -> Call:
    """Add one job per payload. Returns one row per job, in order: (id,)."""
    try:
        documents = [to_json(p) for p in payloads]
    except InvalidPayload:
        # Encode again, naming each, so that the error says which one.
        for i, p in enumerate(payloads, 1):
            to_json(p, f"payloads[{i}]")
        raise
    keys = list(idempotency_keys) if idempotency_keys is not None else None
    check_queue_text(queue)
    return Call(
        queries.ENQUEUE_BATCH,
        [
            queue,
            documents,
            run_at,
            delay,
            sql_int("priority", priority),
            sql_int("max_attempts", max_attempts),
            keys,
            timeout,
            unique_mode,
            unique_period,
        ],
    )


def get_job(job_id: int) -> Call:
    """One job; read with queries.JOB_ROW."""
    return Call(queries.GET_JOB, [sql_int("job_id", job_id, 64)])


def list_jobs(status: str | None, queue: str | None, limit: int, before_id: int | None) -> Call:
    """Jobs newest first, below before_id if given; read with queries.JOB_ROW."""
    before = sql_int("before_id", before_id, 64)
    return Call(queries.LIST_JOBS, [status, queue, sql_int("limit", limit), before])


def retry_dead(job_id: int) -> Call:
    """Replay a dead letter. Returns one row: (new id,)."""
    return Call(queries.RETRY_DEAD, [sql_int("job_id", job_id, 64)])


def cancel(job_id: int) -> Call:
    """Cancel a job. Returns one row: (whether it was cancelled now,)."""
    return Call(queries.CANCEL, [sql_int("job_id", job_id, 64)])


def purge(older_than: timedelta | None, queue: str | None) -> Call:
    """Delete finished jobs. Returns one row: (how many,)."""
    return Call(queries.PURGE, [older_than, queue])


def configure_queue(
    queue: str,
    max_attempts: int | None,
    backoff_base: timedelta | None,
    backoff_max: timedelta | None,
    retention: timedelta | None,
    max_payload_bytes: int | None,
    timeout: timedelta | None,
    dead_retention: timedelta | None,
    max_result_bytes: int | None,
    concurrency: int | None,
    rate_limit: int | None,
    rate_period: timedelta | None,
    unique_mode: str | None,
    unique_period: timedelta | None,
) -> Call:
    """Set a queue's defaults. Returns one row: the settings."""
    return Call(
        queries.CONFIGURE_QUEUE,
        [
            queue,
            sql_int("max_attempts", max_attempts),
            backoff_base,
            backoff_max,
            retention,
            sql_int("max_payload_bytes", max_payload_bytes),
            timeout,
            dead_retention,
            sql_int("max_result_bytes", max_result_bytes),
            sql_int("concurrency", concurrency),
            sql_int("rate_limit", rate_limit),
            rate_period,
            unique_mode,
            unique_period,
        ],
    )


def pause_queue(queue: str) -> Call:
    """Stop claims of a queue. Returns one row: (paused since,)."""
    return Call(queries.PAUSE_QUEUE, [queue])


def resume_queue(queue: str) -> Call:
    """Let claims take a paused queue's jobs again. Returns one row: (whether it was paused,)."""
    return Call(queries.RESUME_QUEUE, [queue])


def maintain(max_rows: int) -> Call:
    """One maintenance pass. Returns one row: (what it did, a dict,)."""
    return Call(queries.MAINTAIN, [sql_int("max_rows", max_rows)])


def schedule(
    name: str,
    cron: str,
    queue: str,
    payload: Any,
    tz: str,
    priority: int,
    max_attempts: int | None,
) -> Call:
    """Create or replace a cron schedule. Returns one row: (next tick,)."""
    document = to_json({} if payload is None else payload)
    params = [name, cron, queue, document, tz, sql_int("priority", priority),
              sql_int("max_attempts", max_attempts)]  # fmt: skip
    return Call(queries.SCHEDULE, params)


def unschedule(name: str) -> Call:
    """Remove a schedule. Returns one row: (whether there was one,)."""
    return Call(queries.UNSCHEDULE, [name])


def schedules() -> Call:
    """Every schedule; read with queries.SCHEDULE_ROW."""
    return Call(queries.SCHEDULES, [])
