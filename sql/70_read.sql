-- Reading jobs: one shape for "a job", whichever table holds it.

-- all_jobs: every job, live or dead-lettered, as one row type. status is one of
-- pending (a retry waiting shows pending with error set), running, completed,
-- cancelled, dead. finished is true once the job will not run again.
CREATE OR REPLACE VIEW pyqueue.all_jobs AS
SELECT id, queue, status, payload, priority, attempt, max_attempts, run_at,
       progress, progress_message, result, error, traceback, idempotency_key,
       worker, locked_until, created_at, started_at, failed_at, finished_at,
       NULL::bigint AS retried_as,
       status IN ('completed', 'cancelled') AS finished
FROM pyqueue.jobs
UNION ALL
SELECT id, queue, 'dead', payload, priority, attempt, max_attempts, NULL,
       progress, progress_message, NULL, error, traceback, idempotency_key,
       worker, NULL, created_at, started_at, failed_at, dead_at,
       retried_as,
       true
FROM pyqueue.dead_jobs;

-- job_statuses: the words for a job's state, defined here once. Readers (the
-- CLI, the dashboard, other languages) show these instead of words of their own.
--   status    a status of all_jobs, in lifecycle order (position)
--   finished  the job will not run again
--   meaning   a line for people
CREATE OR REPLACE VIEW pyqueue.job_statuses AS
SELECT *
FROM (VALUES
    (1, 'pending', false, 'waiting to run; a retry waiting for its backoff has an error'),
    (2, 'running', false, 'leased to a worker, its handler running'),
    (3, 'completed', true, 'done; result holds what the handler returned'),
    (4, 'cancelled', true, 'cancelled by an operator before it finished'),
    (5, 'dead', true, 'out of attempts, in the dead-letter table with its last error')
) AS s(position, status, finished, meaning);

-- job_actions(status, retried_as) -> text[]
-- What an operator may do to a job in this state, defined here once: 'cancel'
-- a pending or running job (cancel() acts on exactly these), 'retry' a dead
-- letter not yet replayed (retry_dead() on a replayed one returns its replay).
-- Readers show the actions this returns rather than deciding them again.
CREATE OR REPLACE FUNCTION pyqueue.job_actions(status text, retried_as bigint DEFAULT NULL)
RETURNS text[]
LANGUAGE sql IMMUTABLE
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
    SELECT CASE
        WHEN status IN ('pending', 'running') THEN ARRAY['cancel']
        WHEN status = 'dead' AND retried_as IS NULL THEN ARRAY['retry']
        ELSE '{}'::text[]
    END
$$;

-- get_job(job_id) -> pyqueue.all_jobs
-- One job by id. Raises (SQLSTATE P0002) when no job has that id, and 42501
-- when the caller's queue grants do not let it read the job's queue.
CREATE OR REPLACE FUNCTION pyqueue.get_job(job_id bigint) RETURNS pyqueue.all_jobs
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
DECLARE
    job all_jobs;
BEGIN
    PERFORM _authorize_job(job_id, 'read');
    SELECT * INTO job FROM all_jobs WHERE id = job_id;
    IF NOT FOUND THEN
        PERFORM _job_not_found(job_id);
    END IF;
    RETURN job;
END;
$$;

-- _check_listing(status, queue, max_rows, limit): the filters of list_jobs and
-- job_summaries: a known status, a valid queue name, 1 <= max_rows <= limit.
CREATE OR REPLACE FUNCTION pyqueue._check_listing(status text, queue text, max_rows integer,
                                                  max_limit integer)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_variable
BEGIN
    IF status IS NOT NULL
       AND NOT EXISTS (SELECT FROM pyqueue.job_statuses s WHERE s.status = status) THEN
        RAISE EXCEPTION 'pyqueue: unknown status %', quote_literal(left(status, 40))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A status is one of ' || (SELECT string_agg(s.status, ', '
                                                     ORDER BY s.position)
                                                   FROM pyqueue.job_statuses s) || '.';
    END IF;
    IF queue IS NOT NULL THEN
        PERFORM pyqueue._check_queue(queue);
    END IF;
    PERFORM pyqueue._check_range('max_rows', max_rows, 1, max_limit);
END;
$$;

-- list_jobs(status, queue, max_rows, before_id) -> SETOF pyqueue.all_jobs
-- Jobs newest first, optionally of one status and one queue, at most max_rows
-- (up to 100000), only those with an id below before_id when it is given: the
-- next page starts before the last id of this one (keyset paging, which
-- costs the same at any depth). A role restricted by queue grants sees only
-- the jobs of queues it may read.
CREATE OR REPLACE FUNCTION pyqueue.list_jobs(
    status    text    DEFAULT NULL,
    queue     text    DEFAULT NULL,
    max_rows  integer DEFAULT 100,
    before_id bigint  DEFAULT NULL
) RETURNS SETOF pyqueue.all_jobs
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    restricted boolean := _restricted();
BEGIN
    PERFORM _check_listing(status, queue, max_rows, 100000);
    RETURN QUERY
    SELECT * FROM all_jobs a
    WHERE (status IS NULL OR a.status = status)
      AND (queue IS NULL OR a.queue = queue)
      -- coalesce, not "IS NULL OR": the bound stays an index condition.
      AND a.id < coalesce(before_id, 9223372036854775807)
      AND (NOT restricted OR _may(a.queue, 'read'))
    ORDER BY a.id DESC
    LIMIT coalesce(max_rows, 100);
END;
$$;

-- job_summaries(status, queue, before_id, max_rows, idempotency_key)
--   -> SETOF pyqueue.job_summary (all_jobs without payload, result and
--      traceback, error cut to its first line of at most 200 characters)
-- The rows a listing shows, newest first: list_jobs' filters and keyset paging
-- (before_id), at most max_rows (1 to 500), and optionally only the jobs that
-- hold one idempotency key. Leaves out what can be large, so that a page
-- costs the same whatever the jobs carry. Queue grants as for list_jobs.
CREATE OR REPLACE FUNCTION pyqueue.job_summaries(
    status          text    DEFAULT NULL,
    queue           text    DEFAULT NULL,
    before_id       bigint  DEFAULT NULL,
    max_rows        integer DEFAULT 50,
    idempotency_key text    DEFAULT NULL
) RETURNS SETOF pyqueue.job_summary
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
DECLARE
    restricted boolean := _restricted();
BEGIN
    PERFORM _check_listing(job_summaries.status, job_summaries.queue, job_summaries.max_rows, 500);
    RETURN QUERY
    SELECT a.id, a.queue, a.status, a.priority, a.attempt, a.max_attempts, a.run_at,
           a.progress, a.progress_message, left(split_part(a.error, E'\n', 1), 200),
           a.idempotency_key, a.worker, a.created_at, a.started_at, a.finished_at,
           a.retried_as, a.finished
    FROM (
        -- The two tables of all_jobs, each skipped whole when the status
        -- asked for cannot be in it: otherwise a list of dead letters would
        -- read every live job on the way (the planner cannot tell from a
        -- parameter which branch of the view it excludes).
        SELECT j.id, j.queue, j.status::text AS status, j.priority, j.attempt, j.max_attempts,
               j.run_at, j.progress, j.progress_message, j.error, j.idempotency_key, j.worker,
               j.created_at, j.started_at, j.finished_at, NULL::bigint AS retried_as,
               j.status IN ('completed', 'cancelled') AS finished
        FROM jobs j
        WHERE job_summaries.status IS DISTINCT FROM 'dead'
          AND (job_summaries.status IS NULL OR j.status = job_summaries.status)
        UNION ALL
        SELECT d.id, d.queue, 'dead', d.priority, d.attempt, d.max_attempts, NULL,
               d.progress, d.progress_message, d.error, d.idempotency_key, d.worker,
               d.created_at, d.started_at, d.dead_at, d.retried_as, true
        FROM dead_jobs d
        WHERE job_summaries.status IS NULL OR job_summaries.status = 'dead'
    ) AS a
    WHERE (job_summaries.queue IS NULL OR a.queue = job_summaries.queue)
      AND (job_summaries.idempotency_key IS NULL
           OR a.idempotency_key = job_summaries.idempotency_key)
      -- coalesce, not "IS NULL OR": the bound stays an index condition.
      AND a.id < coalesce(job_summaries.before_id, 9223372036854775807)
      AND (NOT restricted OR _may(a.queue, 'read'))
    ORDER BY a.id DESC
    LIMIT job_summaries.max_rows;
END;
$$;

-- schema_version() -> integer
-- The version of the pyqueue schema in this database. Each migration raises it.
CREATE OR REPLACE FUNCTION pyqueue.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
    SELECT 6;
$$;

-- schema_compatibility() -> (version integer, oldest_client_version integer)
-- Which clients this schema serves. A client is written for one schema version
-- (its own) and can use schemas from some version on (it says which). It works
-- here when version is at least the oldest schema it can use, and its own
-- version is at least oldest_client_version. A migration that only adds (new
-- tables, columns with defaults, functions, arguments last with defaults) keeps
-- oldest_client_version, so workers of the previous release go on working while
-- the schema is upgraded under them; one that changes or removes what older
-- clients call raises it. Schema version 1 had no such function: it served
-- clients of version 1 only.
CREATE OR REPLACE FUNCTION pyqueue.schema_compatibility(
    OUT version integer,
    OUT oldest_client_version integer
)
LANGUAGE sql IMMUTABLE
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
    SELECT pyqueue.schema_version(), 1;
$$;
