-- pyqueue tables, indexes and types: the state of the schema, as it stands at
-- the newest schema version. Unlike the other files of sql/, which hold code
-- (CREATE OR REPLACE, safe to run again, copied into each migration that changes
-- them), this file runs once on an empty database; an upgrade changes these
-- objects with hand-written steps in a new migration (ALTER TABLE ...). So a new
-- column goes last in its CREATE TABLE here, where ADD COLUMN puts it.
--
-- jobs       the hot table: every job that is pending, running, completed or
--            cancelled. Built for churn: the claim reads one partial index that
--            holds only pending jobs, so finished rows never slow it down.
-- dead_jobs  the dead-letter table: jobs whose attempts ran out, moved here whole
--            (same id) in the transaction that gave up on them.
-- queues     per-queue defaults; the row named '*' holds the defaults of every
--            queue that has no row (or a NULL column) of its own.
-- queue_grants  which queues a role may act on (sql/03_permissions.sql); a role
--            with no row here is not restricted.

CREATE SCHEMA pyqueue;
COMMENT ON SCHEMA pyqueue IS 'pyqueue: a durable job queue; see sql/ for the API';

CREATE TABLE pyqueue.queues (
    name         text PRIMARY KEY,
    max_attempts integer CHECK (max_attempts BETWEEN 1 AND 1000),
    backoff_base interval CHECK (backoff_base > interval '0'),
    backoff_max  interval CHECK (backoff_max > interval '0'),
    retention    interval CHECK (retention >= interval '0'),
    -- Largest payload accepted, in bytes of its stored jsonb form.
    max_payload_bytes integer CHECK (max_payload_bytes BETWEEN 1 AND 268435456),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    -- How long a run may take before it fails as timed out (NULL: no limit).
    timeout      interval CHECK (timeout > interval '0'),
    -- How long a dead letter is kept, from its death, before maintain() deletes it.
    dead_retention interval CHECK (dead_retention >= interval '0'),
    -- Largest result complete() stores, in bytes of its stored jsonb form.
    max_result_bytes integer CHECK (max_result_bytes BETWEEN 1 AND 268435456),
    -- Flow control (sql/22_flow.sql), per queue only (never on '*'): at most
    -- `concurrency` jobs running at once, at most `rate_limit` starts in any
    -- window of `rate_period`, and no claims at all while paused_at is set.
    concurrency  integer CHECK (concurrency BETWEEN 1 AND 100000),
    rate_limit   integer CHECK (rate_limit BETWEEN 1 AND 10000),
    rate_period  interval CHECK (rate_period > interval '0'),
    paused_at    timestamptz,
    -- How enqueue treats an idempotency key the queue holds (sql/12_unique.sql),
    -- when the call names no mode; NULL takes the defaults row's.
    unique_mode  text CHECK (unique_mode IN ('until_purged', 'pending', 'active',
                                             'throttle', 'debounce')),
    unique_period interval CHECK (unique_period > interval '0'),
    CHECK ((rate_limit IS NULL) = (rate_period IS NULL))
);

-- The built-in defaults (DESIGN.md): 3 attempts in all, backoff from 1 s up to
-- 1 h, finished jobs kept for 7 days and dead letters for 30, payloads up to
-- 1 MiB and results up to 1 MiB, no timeout. configure_queue('*', ...) changes them.
INSERT INTO pyqueue.queues (name, max_attempts, backoff_base, backoff_max, retention,
                            max_payload_bytes, dead_retention, max_result_bytes)
VALUES ('*', 3, interval '1 second', interval '1 hour', interval '7 days', 1048576,
        interval '30 days', 1048576);

-- A job's status, as a domain rather than a CHECK on jobs: PostgreSQL reads
-- and plans a table's CHECK constraints again for every statement that writes
-- the table, while a domain's check is planned once per session. Readers see
-- plain text.
CREATE DOMAIN pyqueue.job_status AS text
    CHECK (VALUE IN ('pending', 'running', 'completed', 'cancelled'));

CREATE TABLE pyqueue.jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            text        NOT NULL,
    status           pyqueue.job_status NOT NULL DEFAULT 'pending',
    priority         integer     NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    -- attempt counts claims: a job runs for the n-th time with attempt = n.
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    payload          jsonb       NOT NULL,
    -- Per-job backoff; NULL takes the queue's.
    backoff_base     interval,
    backoff_max      interval,
    idempotency_key  text,
    -- The fencing value of the current claim: only its holder may finish the job.
    lease_token      uuid,
    locked_until     timestamptz,
    worker           text,
    progress         smallint,
    progress_message text,
    result           jsonb,
    error            text,
    traceback        text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    failed_at        timestamptz,
    finished_at      timestamptz,
    -- The longest a run may take, fixed at enqueue from the job's option or its
    -- queue's (NULL: no limit). Past started_at + timeout nobody holds the job.
    timeout          interval,
    -- Set when an enqueue in another uniqueness mode took this job's key for a
    -- new job: the key stays on the row, for people, but no longer holds.
    key_released_at  timestamptz,
    CHECK (attempt BETWEEN 0 AND max_attempts),
    CHECK ((status = 'running') = (lease_token IS NOT NULL))
) WITH (
    -- Room on each page for the new versions of updated rows, and a vacuum that
    -- keeps up with a table whose rows change state several times a minute.
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- The claim: due pending jobs of one queue, highest priority then oldest first.
-- Only pending rows are in it, so a million finished jobs cost the claim nothing.
-- Priority ascending, though the claim wants the highest first: the claim
-- finds a queue's highest priority by scanning backwards from the newest
-- entries, which are live. Claimed jobs leave dead entries at the oldest end
-- of each priority until vacuum removes them; a probe from that end would walk
-- them all, as the due-job scan that follows it already must.
CREATE INDEX jobs_claim_idx ON pyqueue.jobs (queue, priority, run_at, id)
    WHERE status = 'pending';

-- Lease recovery: running jobs by lease end.
CREATE INDEX jobs_lease_idx ON pyqueue.jobs (locked_until)
    WHERE status = 'running';

-- One job holds each idempotency key of a queue, enforced by the database so
-- that concurrent enqueues cannot both insert. A job whose key was released
-- (key_released_at) no longer holds it.
CREATE UNIQUE INDEX jobs_idempotency_idx ON pyqueue.jobs (queue, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND key_released_at IS NULL;

-- Purge and the per-minute throughput view read finished jobs by time.
CREATE INDEX jobs_finished_idx ON pyqueue.jobs (finished_at)
    WHERE status IN ('completed', 'cancelled');

CREATE TABLE pyqueue.dead_jobs (
    id               bigint PRIMARY KEY,
    queue            text        NOT NULL,
    priority         integer     NOT NULL,
    attempt          integer     NOT NULL,
    max_attempts     integer     NOT NULL,
    payload          jsonb       NOT NULL,
    backoff_base     interval,
    backoff_max      interval,
    idempotency_key  text,
    worker           text,
    progress         smallint,
    progress_message text,
    error            text,
    traceback        text,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    failed_at        timestamptz,
    dead_at          timestamptz NOT NULL DEFAULT now(),
    -- Set when retry_dead replayed this job as a new one.
    retried_as       bigint,
    retried_at       timestamptz,
    timeout          interval
);

CREATE INDEX dead_jobs_dead_at_idx ON pyqueue.dead_jobs (dead_at);

-- What a worker gets for each job it claims. lease_token is the fencing value:
-- complete, fail, heartbeat, report_progress and release act only when given
-- the token of the job's current claim. The jobs of one claim share a token;
-- every claim draws a new one.
CREATE TYPE pyqueue.claimed_job AS (
    id           bigint,
    queue        text,
    payload      jsonb,
    attempt      integer,
    max_attempts integer,
    lease_token  uuid,
    locked_until timestamptz
);

-- What fail_batch made of each job it was given: pending again after its
-- backoff, dead-lettered (no attempts left), or lost (the caller no longer
-- held it, or no such job), changing nothing. The words fail() returns.
CREATE TYPE pyqueue.fail_outcome AS ENUM ('pending', 'dead', 'lost');

-- Cron schedules (sql/65_schedules.sql): each fires a job on its queue at every
-- tick of its cron expression, read as wall-clock time in its zone.
CREATE TABLE pyqueue.cron_schedules (
    name         text PRIMARY KEY,
    cron         text        NOT NULL,
    tz           text        NOT NULL,
    queue        text        NOT NULL,
    payload      jsonb       NOT NULL,
    priority     integer     NOT NULL,
    max_attempts integer,
    -- The next tick to fire; maintain() fires schedules whose tick has come.
    next_run_at  timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX cron_schedules_due_idx ON pyqueue.cron_schedules (next_run_at);

-- One row per tick fired. The primary key is what makes a tick fire once,
-- however many sessions fire schedules at the same moment.
CREATE TABLE pyqueue.schedule_runs (
    schedule  text        NOT NULL REFERENCES pyqueue.cron_schedules (name) ON DELETE CASCADE,
    tick      timestamptz NOT NULL,
    job_id    bigint,  -- set in the transaction that inserts the row
    fired_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, tick)
);

-- The ledger of a queue with flow limits: its row is the lock that claims of
-- the queue take in turn, and starts holds the start times of its jobs within
-- the last rate_period (at most rate_limit of them).
CREATE TABLE pyqueue.queue_flow (
    queue      text PRIMARY KEY,
    starts     timestamptz[] NOT NULL DEFAULT '{}',
    claimed_at timestamptz
);

-- When maintain() last ran, and what it did: one row.
CREATE TABLE pyqueue.maintenance (
    only_row    boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_run_at timestamptz,
    last_result jsonb
);
INSERT INTO pyqueue.maintenance DEFAULT VALUES;

-- Queue-level permissions (sql/03_permissions.sql): a role with rows here may
-- act only on the queues its patterns match, and only as its actions say.
-- role is a name, not an oid: a role dropped and created again under the same
-- name stays restricted, the safe side.
CREATE TABLE pyqueue.queue_grants (
    role       text        NOT NULL,
    -- A queue name, or a prefix ending in '*' ('billing.*'; '*' alone: every queue).
    pattern    text        NOT NULL,
    actions    text[]      NOT NULL CHECK (actions <@ ARRAY['enqueue', 'work', 'read']
                                           AND cardinality(actions) > 0),
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role, pattern)
);

-- What job_summaries() returns for each job: the all_jobs columns a listing
-- shows, without payload, result and traceback, error cut to its first line.
CREATE TYPE pyqueue.job_summary AS (
    id               bigint,
    queue            text,
    status           text,
    priority         integer,
    attempt          integer,
    max_attempts     integer,
    run_at           timestamptz,
    progress         smallint,
    progress_message text,
    error            text,
    idempotency_key  text,
    worker           text,
    created_at       timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    retried_as       bigint,
    finished         boolean
);
