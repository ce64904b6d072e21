"""Every statement the Python package sends to PostgreSQL, each named once.

The client, the worker, the CLI, the dashboard and the private-server helper
refer to these names; none of them holds SQL text of its own. Each entry says
what the statement does (the contract itself is the SQL function's, commented
in `sql/`) and the rows it returns.

Conventions that the callers rely on:

- `%b` marks a parameter sent in binary. Arrays go that way: as text, psycopg
  would quote and escape every element, on the hot path of every batch.
- The worker asks for claimed rows in binary (`binary=True` on its cursor), so
  the lease token and timestamps arrive without text parsing.
- A statement that takes no optional argument is a constant: sending it builds
  nothing, and psycopg prepares it after a few uses on a connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields

from psycopg import sql
from psycopg.rows import class_row

from pyqueue.jobs import Job, JobSummary, Schedule

# Channels. Enqueue notifies JOBS_CHANNEL with the queue name; complete, fail,
# cancel and recovery notify FINISHED_CHANNEL with the comma-separated job ids.
JOBS_CHANNEL = "pyqueue_jobs"
FINISHED_CHANNEL = "pyqueue_finished"

LISTEN_JOBS = f"LISTEN {JOBS_CHANNEL}"
LISTEN_FINISHED = f"LISTEN {FINISHED_CHANNEL}"

# --- Producer -----------------------------------------------------------------

# Add one job: (queue, payload as JSON text). Returns one row: (id bigint,), the
# existing job's id when an idempotency key is already held. {} takes the named
# options given, if any (see enqueue_with_options).
_ENQUEUE_CALL = "SELECT pyqueue.enqueue(%s, %s::jsonb{})"
ENQUEUE = _ENQUEUE_CALL.format("")


def enqueue_with_options(names: Iterable[str]) -> str:
    """ENQUEUE taking, after queue and payload, these options by name in this order.

    The names are enqueue's arguments (run_at, delay, priority, max_attempts,
    idempotency_key, timeout, unique_mode, unique_period). Only the options a
    caller gives are sent, so the SQL function's defaults apply to the others.
    """
    return _ENQUEUE_CALL.format("".join(f", {name} => %s" for name in names))


# Add one job per payload in one statement: (queue, payloads as JSON text[],
# run_at, delay, priority, max_attempts, idempotency_keys text[], timeout,
# unique_mode, unique_period). Returns one row per job, in the payloads' order:
# (id bigint,).
ENQUEUE_BATCH = (
    "SELECT * FROM pyqueue.enqueue_batch(%s, %b::text[]::jsonb[],"
    " run_at => %s, delay => %s, priority => %s, max_attempts => %s,"
    " idempotency_keys => %b::text[], timeout => %s, unique_mode => %s,"
    " unique_period => %s)"
)

# --- Reading jobs -----------------------------------------------------------------

# The row factory for statements that return `all_jobs` rows.
JOB_ROW = class_row(Job)
# The columns of `all_jobs` that Job holds, named: a later schema version may add
# columns to a view, and a client reads only those it knows. `actions` is what
# SQL's job_actions() allows on the job, so no reader decides that again.
JOB_COLUMNS = ", ".join(
    "pyqueue.job_actions(status, retried_as) AS actions" if field.name == "actions" else field.name
    for field in fields(Job)
)

# One job, live or dead-lettered: (job_id,). Returns one `all_jobs` row (read it
# with JOB_ROW); raises no_data_found (P0002) for an unknown id.
GET_JOB = f"SELECT {JOB_COLUMNS} FROM pyqueue.get_job(%s)"

# Jobs newest first: (status or NULL, queue or NULL, max_rows, before_id or NULL:
# only ids below it). Returns `all_jobs` rows.
LIST_JOBS = f"SELECT {JOB_COLUMNS} FROM pyqueue.list_jobs(%s, %s, %s, %s)"

# A page of jobs as a listing shows them, newest first, without payload, result
# or traceback: (status or NULL, queue or NULL, before_id or NULL, max_rows up to
# 500, idempotency_key or NULL). Returns rows read with JOB_SUMMARY_ROW.
JOB_SUMMARY_ROW = class_row(JobSummary)
JOB_SUMMARIES = (
    f"SELECT {', '.join(field.name for field in fields(JobSummary))}"
    " FROM pyqueue.job_summaries(%s, %s, %s, %s, %s)"
)

# --- Operator actions -----------------------------------------------------------

# Replay a dead-lettered job: (job_id,). Returns one row: (new job id,).
RETRY_DEAD = "SELECT pyqueue.retry_dead(%s)"

# Cancel a pending or running job: (job_id,). Returns one row: (true, or false
# when it had already finished,).
CANCEL = "SELECT pyqueue.cancel(%s)"

# Delete finished jobs past retention: (older_than interval or NULL, queue or NULL).
# Returns one row: (rows deleted,).
PURGE = "SELECT pyqueue.purge(%s, %s)"

# A queue's defaults ('*': every queue's): (queue, max_attempts, backoff_base,
# backoff_max, retention, max_payload_bytes, timeout, dead_retention,
# max_result_bytes, concurrency, rate_limit, rate_period, unique_mode,
# unique_period), NULL keeping one as it is. Returns one row: the effective
# settings.
CONFIGURE_QUEUE = (
    "SELECT pyqueue.configure_queue(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)

# Stop claims of a queue: (queue,). Returns one row: (paused since,).
PAUSE_QUEUE = "SELECT pyqueue.pause_queue(%s)"

# Let claims take a paused queue's jobs again: (queue,). Returns one row: (true,
# or false when it was not paused,).
RESUME_QUEUE = "SELECT pyqueue.resume_queue(%s)"

# Create or replace a cron schedule: (name, cron, queue, payload as JSON text,
# tz, priority, max_attempts). Returns one row: (the next tick,).
SCHEDULE = "SELECT pyqueue.schedule(%s, %s, %s, %s::jsonb, %s, %s, %s)"

# Remove a schedule: (name,). Returns one row: (false when there was none,).
UNSCHEDULE = "SELECT pyqueue.unschedule(%s)"

# Every schedule, by name. Returns rows read with SCHEDULE_ROW.
SCHEDULES = (
    "SELECT name, cron, tz, queue, payload, priority, max_attempts, next_run_at,"
    " last_run_at, last_job_id FROM pyqueue.schedules ORDER BY name"
)
SCHEDULE_ROW = class_row(Schedule)

# --- Worker -------------------------------------------------------------------------

# Lease due jobs: (queues text[], worker name, how many at most, lease interval,
# how many of them ahead of free handler slots). Expired leases are recovered
# inside the call. Returns `claimed_job` rows, each
# read as ClaimedJob(*row) (the worker asks for them in binary), its columns
# named so that a later schema version may add some.
CLAIM = (
    "SELECT id, queue, payload, attempt, max_attempts, lease_token, locked_until"
    " FROM pyqueue.claim_batch(%b::text[], %s, %s, %s, %s)"
)

# After a claim that found nothing: (queues text[],). Returns one row: (how long
# to wait before claiming again, or NULL to wait for a NOTIFY as usual,); see
# sql/22_flow.sql.
CLAIM_WAIT = "SELECT pyqueue.claim_wait(%b::text[])"

# Store results: (job ids bigint[], lease tokens uuid[], results as JSON text[]
# or NULL for no result at all). Returns one row per job stored: (id,); a job
# missing from them was lost (its lease was taken over, or it was cancelled).
# Raises a data exception (class 22) when the database refuses a result.
COMPLETE = "SELECT * FROM pyqueue.complete_batch(%b::bigint[], %b::uuid[], %b::text[]::jsonb[])"

# Complete a job in the handler's own transaction (job.transaction()): (job_id,
# lease_token, result JSON text or NULL). Raises SQLSTATE 55000 when the run no
# longer holds the job, so that the transaction rolls back.
COMPLETE_IN_TRANSACTION = "SELECT pyqueue.complete_or_raise(%s, %s, %s::jsonb)"

# Record failures, a burst in one statement: (job ids bigint[], lease tokens
# uuid[], errors text[], tracebacks text[], retryable boolean[] or NULL when
# every job may be retried; false dead-letters its job at once). Returns one
# row per job, in the order given: (id, outcome) where outcome is a
# FailOutcome's value: 'pending' (retried later), 'dead' (dead-lettered) or
# 'lost' (no longer this worker's).
FAIL_BATCH = (
    "SELECT job_id, outcome::text"
    " FROM pyqueue.fail_batch(%b::bigint[], %b::uuid[], %b::text[], %b::text[], %b::boolean[])"
)

# Extend leases: (job ids bigint[], lease tokens uuid[], lease interval).
# Returns one row per job still held: (id,).
EXTEND_LEASES = "SELECT * FROM pyqueue.heartbeat(%b::bigint[], %b::uuid[], %s)"

# Hand back jobs never started, their attempt not counted: (job ids bigint[],
# lease tokens uuid[]). Returns one row per job handed back: (id,).
HAND_BACK = "SELECT * FROM pyqueue.release(%b::bigint[], %b::uuid[])"

# Put jobs whose lease ran out back to pending, or dead-letter them.
# Returns one row: (jobs recovered,).
RECOVER_EXPIRED = "SELECT pyqueue.recover_expired()"

# One pass of housekeeping (pyqueue.maintain), skipped when another worker's
# pass started less than `every` ago: (every interval,). Returns one row: (what
# it did, as a dict: ran, recovered, fired, purged, dead_purged, more; or ran
# false and a reason,).
MAINTAIN_EVERY = "SELECT pyqueue.maintain(every => %s)"

# One pass of housekeeping now: (max_rows,). Returns one row, as MAINTAIN_EVERY.
MAINTAIN = "SELECT pyqueue.maintain(max_rows => %s)"

# Best-effort progress: (job_id, lease_token, percent, message or NULL).
# Returns one row: (false when the job was lost,).
REPORT_PROGRESS = "SELECT pyqueue.report_progress(%s, %s, %s, %s)"

# --- Monitoring views -------------------------------------------------------------

# The words for a job's status, in lifecycle order: status, finished, meaning.
# Read as dict rows; readers show these instead of words of their own.
JOB_STATUSES = "SELECT status, finished, meaning FROM pyqueue.job_statuses ORDER BY position"

# Per queue: queue, pending, due, retrying, running, completed, cancelled, dead,
# oldest_due_age (interval). Read as dict rows.
QUEUE_STATS = "SELECT * FROM pyqueue.queue_stats"

# Per queue, the figures that `pyqueue metrics` publishes (sql/75_metrics.sql
# says what each means): queue, pending, running, completed, cancelled, dead,
# due, oldest_due_seconds, completed_last_minute, failed_last_minute,
# dead_last_minute, lease_expired. Read as dict rows.
QUEUE_METRICS = "SELECT * FROM pyqueue.queue_metrics"

# Each of the last 60 minutes, oldest first, zeros included: minute, completed,
# failed; every queue's sum, or one queue's: {"queue": name or None}.
THROUGHPUT_LAST_HOUR = (
    "SELECT m.minute, coalesce(sum(t.completed), 0)::int AS completed,"
    "       coalesce(sum(t.failed), 0)::int AS failed"
    " FROM generate_series(date_trunc('minute', now()) - interval '59 minutes',"
    "                      date_trunc('minute', now()), interval '1 minute') AS m(minute)"
    " LEFT JOIN pyqueue.throughput t"
    "   ON t.minute = m.minute AND (%(queue)s::text IS NULL OR t.queue = %(queue)s)"
    " GROUP BY m.minute ORDER BY m.minute"
)

# A page of dead letters, newest first: (limit, offset). Returns id, queue,
# attempt, max_attempts, error, created_at, dead_at, retried_as, retried_at,
# actions (job_actions(): 'retry' until it is replayed).
DEAD_LETTERS_PAGE = (
    "SELECT id, queue, attempt, max_attempts, error, created_at, dead_at,"
    "       retried_as, retried_at, pyqueue.job_actions('dead', retried_as) AS actions"
    " FROM pyqueue.dead_letters LIMIT %s OFFSET %s"
)

# --- Schema -------------------------------------------------------------------------

# Whether pyqueue is installed here, and whether it says which clients it serves.
# Returns one row: (schema_compatibility() exists, schema_version() exists).
SCHEMA_FUNCTIONS = (
    "SELECT to_regprocedure('pyqueue.schema_compatibility()') IS NOT NULL,"
    " to_regprocedure('pyqueue.schema_version()') IS NOT NULL"
)

# Which clients the schema serves. Returns one row: (version, oldest_client_version).
SCHEMA_COMPATIBILITY = "SELECT version, oldest_client_version FROM pyqueue.schema_compatibility()"

# The same for schema version 1, which served its own clients only and had no
# schema_compatibility(). Returns one row: (version, version).
SCHEMA_VERSION_ONLY = "SELECT v, v FROM pyqueue.schema_version() AS v"

# Hold this database's pyqueue migration lock until the session ends.
MIGRATION_LOCK = "SELECT pg_advisory_lock(hashtextextended('pyqueue.migrate', 0))"

# One round trip on an idle pooled connection whose socket has something waiting:
# it fails when the server hung up. Returns one row: (1,).
PING = "SELECT 1"

# --- The private server --------------------------------------------------------------

# Whether a database exists: (name,). Returns one row, or none.
DATABASE_EXISTS = "SELECT 1 FROM pg_database WHERE datname = %s"


def create_database(name: str) -> sql.Composed:
    """CREATE DATABASE with `name` quoted as an identifier."""
    return sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))


def set_password(role: str, password: str) -> sql.Composed:
    """ALTER ROLE ... PASSWORD, with the role and the password quoted (hashed by the server)."""
    return sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
