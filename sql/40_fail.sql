-- Fail: a worker reports an error; the job is retried later or dead-lettered.

-- _bury(job_ids, error, traceback) -> SETOF bigint (the ids moved)
-- Moves jobs from jobs to dead_jobs, whole and under the same id, in the
-- caller's transaction: a job is in exactly one of the two tables. error and
-- traceback become the dead job's last ones.
CREATE OR REPLACE FUNCTION pyqueue._bury(job_ids bigint[], error text, traceback text DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
#variable_conflict use_variable
DECLARE
    buried bigint[];
BEGIN
    WITH gone AS (
        DELETE FROM pyqueue.jobs j WHERE j.id = ANY (job_ids) RETURNING j.*
    ), moved AS (
        INSERT INTO pyqueue.dead_jobs (id, queue, priority, attempt, max_attempts, payload,
                               backoff_base, backoff_max, idempotency_key, worker,
                               progress, progress_message, error, traceback,
                               created_at, started_at, failed_at, timeout)
        SELECT g.id, g.queue, g.priority, g.attempt, g.max_attempts, g.payload,
               g.backoff_base, g.backoff_max, g.idempotency_key, g.worker,
               g.progress, g.progress_message, error,
               traceback, g.created_at, g.started_at, now(), g.timeout
        FROM gone g
        RETURNING id
    )
    SELECT coalesce(array_agg(m.id), '{}') INTO buried FROM moved m;
    PERFORM pyqueue._notify_finished(buried);
    RETURN QUERY SELECT unnest(buried);
END;
$$;

-- _fail_locked(job_ids, errors, tracebacks, retryable) -> TABLE (job_id, outcome)
-- Fails running jobs that the caller has locked and found it may fail (held by
-- the caller of fail_batch, or past their timeout for recover_expired). Each
-- with attempts left is pending again, due after backoff_delay(attempt, ...)
-- (the job's backoff, else its queue's), its error and traceback kept:
-- 'pending'. The others move to the dead-letter table: 'dead', and so does a
-- job whose retryable element is false, whatever attempts it has left (a run
-- again cannot help it). The arrays pair up (retryable NULL, or a NULL element:
-- retryable); one row per job.
CREATE OR REPLACE FUNCTION pyqueue._fail_locked(
    job_ids    bigint[],
    errors     text[],
    tracebacks text[],
    retryable  boolean[] DEFAULT NULL
) RETURNS TABLE (job_id bigint, outcome pyqueue.fail_outcome)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    doomed record;
BEGIN
    RETURN QUERY
    WITH failed AS (
        UPDATE pyqueue.jobs j
        SET status       = 'pending',
            run_at       = now() + (
                SELECT pyqueue.backoff_delay(j.attempt,
                                             coalesce(j.backoff_base, s.backoff_base),
                                             coalesce(j.backoff_max, s.backoff_max))
                FROM pyqueue.queue_settings(j.queue) s),
            error        = left(coalesce(f.error, '(no error message)'), 10000),
            traceback    = left(f.traceback, 100000),
            failed_at    = now(),
            lease_token  = NULL,
            locked_until = NULL
        FROM unnest(job_ids, errors, tracebacks, retryable) AS f(id, error, traceback, retryable)
        WHERE j.id = f.id AND j.attempt < j.max_attempts AND f.retryable IS NOT false
        RETURNING j.id
    )
    SELECT failed.id, 'pending'::pyqueue.fail_outcome FROM failed;

    -- What is still running had no attempts left, or must not be retried.
    FOR doomed IN
        SELECT f.id, f.error, f.traceback
        FROM unnest(job_ids, errors, tracebacks) AS f(id, error, traceback)
        JOIN pyqueue.jobs j ON j.id = f.id AND j.status = 'running'
        ORDER BY f.id
    LOOP
        PERFORM pyqueue._bury(ARRAY[doomed.id],
                              left(coalesce(doomed.error, '(no error message)'), 10000),
                              left(doomed.traceback, 100000));
        job_id := doomed.id;
        outcome := 'dead';
        RETURN NEXT;
    END LOOP;
END;
$$;

-- fail_batch(job_ids, lease_tokens, errors, tracebacks, retryable) -> TABLE (job_id, outcome)
-- Records failed runs, many in one call. Each job the caller still holds (its
-- lease token is the job's current one, and the run is within its timeout) is
-- failed as _fail_locked says: 'pending' again after its backoff, or 'dead'
-- with no attempts left. A false element of retryable dead-letters its job at
-- once, attempts left or not: the worker found that no run can succeed (a
-- payload that does not fit its handler's type). Any other id, unknown ones
-- included, is 'lost' and changes nothing. errors pairs with job_ids, and so
-- do tracebacks and retryable when given (NULL: every job may be retried).
-- One row per id given, in the order given. The held jobs are locked in id
-- order first (sql/05_lock_order.sql).
CREATE OR REPLACE FUNCTION pyqueue.fail_batch(
    job_ids      bigint[],
    lease_tokens uuid[],
    errors       text[],
    tracebacks   text[] DEFAULT NULL,
    retryable    boolean[] DEFAULT NULL
) RETURNS TABLE (job_id bigint, outcome pyqueue.fail_outcome)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    held_ids        bigint[];
    held_errors     text[];
    held_tracebacks text[];
    held_retryable  boolean[];
BEGIN
    PERFORM _check_pairs(job_ids, lease_tokens);
    PERFORM _authorize_leases(job_ids, lease_tokens, 'work');
    IF cardinality(errors) IS DISTINCT FROM cardinality(job_ids) THEN
        RAISE EXCEPTION 'pyqueue: errors has % elements, job_ids has %',
            coalesce(cardinality(errors)::text, 'NULL'), cardinality(job_ids)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tracebacks IS NOT NULL AND cardinality(tracebacks) <> cardinality(job_ids) THEN
        RAISE EXCEPTION 'pyqueue: tracebacks has % elements, job_ids has %',
            cardinality(tracebacks), cardinality(job_ids)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF retryable IS NOT NULL AND cardinality(retryable) <> cardinality(job_ids) THEN
        RAISE EXCEPTION 'pyqueue: retryable has % elements, job_ids has %',
            cardinality(retryable), cardinality(job_ids)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    PERFORM _lock_held(job_ids, lease_tokens);

    SELECT array_agg(h.id ORDER BY h.id), array_agg(h.error ORDER BY h.id),
           array_agg(h.traceback ORDER BY h.id), array_agg(h.retryable ORDER BY h.id)
    INTO held_ids, held_errors, held_tracebacks, held_retryable
    FROM (
        -- An id given twice is failed once, with its first error.
        SELECT DISTINCT ON (j.id) j.id, f.error, f.traceback, f.retryable
        FROM jobs j
        JOIN unnest(job_ids, lease_tokens, errors, tracebacks, retryable) WITH ORDINALITY
             AS f(id, token, error, traceback, retryable, ord)
          ON j.id = f.id AND j.lease_token = f.token
        WHERE _in_time(j.started_at, j.timeout)
        ORDER BY j.id, f.ord
    ) AS h;

    RETURN QUERY
    WITH failed AS (
        SELECT * FROM _fail_locked(coalesce(held_ids, '{}'), held_errors, held_tracebacks,
                                   held_retryable)
    )
    SELECT g.id, coalesce(failed.outcome, 'lost')
    FROM unnest(job_ids) WITH ORDINALITY AS g(id, ord)
    LEFT JOIN failed ON failed.job_id = g.id
    ORDER BY g.ord;
END;
$$;

-- fail(job_id, lease_token, error, traceback) -> text
-- fail_batch() for one job: returns 'pending' (to be retried after backoff),
-- 'dead' (dead-lettered) or 'lost' (no longer the caller's, changing nothing).
-- Raises when no job has that id.
CREATE OR REPLACE FUNCTION pyqueue.fail(
    job_id      bigint,
    lease_token uuid,
    error       text,
    traceback   text DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
DECLARE
    outcome fail_outcome;
BEGIN
    SELECT b.outcome INTO outcome
    FROM fail_batch(ARRAY[job_id], ARRAY[lease_token], ARRAY[error], ARRAY[traceback]) b;
    IF outcome = 'lost' THEN
        PERFORM _require_job(job_id);
    END IF;
    RETURN outcome::text;
END;
$$;
