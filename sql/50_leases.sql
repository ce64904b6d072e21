-- Leases: heartbeat, progress and recovery of jobs whose worker went away.

-- heartbeat(job_ids, lease_tokens, lease) -> SETOF bigint
-- Extends the leases the caller holds to now() + lease, never past a run's
-- timeout. Returns the ids still held; a job missing from the answer was lost
-- (recovered, claimed again, cancelled, or past its timeout) and its handler's
-- outcome will not be recorded. Locks the held jobs in id order first
-- (sql/05_lock_order.sql): the worker stores outcomes of the same jobs on
-- another connection meanwhile.
CREATE OR REPLACE FUNCTION pyqueue.heartbeat(
    job_ids      bigint[],
    lease_tokens uuid[],
    lease        interval DEFAULT interval '30 seconds'
) RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
BEGIN
    PERFORM _check_pairs(job_ids, lease_tokens);
    PERFORM _authorize_leases(job_ids, lease_tokens, 'work');
    IF lease IS NULL THEN
        RAISE EXCEPTION 'pyqueue: lease must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM _check_interval('lease', lease);
    PERFORM _lock_held(job_ids, lease_tokens);
    RETURN QUERY
    UPDATE jobs j
    SET locked_until = least(now() + lease, j.started_at + j.timeout)
    FROM unnest(job_ids, lease_tokens) AS h(id, token)
    -- A matching token means running (the table's CHECK); see complete_batch
    -- for why status is not tested here.
    WHERE j.id = h.id AND j.lease_token = h.token AND _in_time(j.started_at, j.timeout)
    RETURNING j.id;
END;
$$;

-- report_progress(job_id, lease_token, progress, message) -> boolean
-- Best-effort progress of a running job: progress is clamped to 0..100 (NULL
-- keeps the last value), message cut to 1000 characters. Returns false when the
-- caller no longer holds the job. Never raises for a lost or unknown job: a
-- progress report must not fail a handler.
CREATE OR REPLACE FUNCTION pyqueue.report_progress(
    job_id      bigint,
    lease_token uuid,
    progress    integer,
    message     text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM _authorize_leases(ARRAY[job_id], ARRAY[report_progress.lease_token], 'work');
    UPDATE jobs
    -- CASE, not coalesce(greatest(0, least(100, p)), ...): least() and greatest()
    -- skip NULLs, so a NULL progress would be stored as 100.
    SET progress         = CASE WHEN report_progress.progress IS NULL THEN progress
                                ELSE greatest(0, least(100, report_progress.progress)) END,
        progress_message = coalesce(left(message, 1000), progress_message)
    WHERE id = job_id AND status = 'running' AND lease_token = report_progress.lease_token
      AND _in_time(started_at, timeout);
    RETURN FOUND;
END;
$$;

-- recover_expired(max_jobs) -> integer (the number of jobs recovered)
-- Running jobs whose lease ran out. A run past its timeout fails as any
-- failure does (retried after backoff, or dead-lettered), with an error that
-- says it timed out, even while its worker is alive. Otherwise the worker died
-- or stalled without a heartbeat: the job goes back to pending with the expired
-- run counted as an attempt, keeping its run_at, which is past, so it is
-- claimed again at once and ahead of the jobs of its priority that came due
-- after it; with no attempts left it is dead-lettered. At most max_jobs per
-- call, oldest lease first, skipping rows locked by others: it never waits for
-- a row (sql/05_lock_order.sql). claim_batch and maintain call this; calling
-- it by hand is harmless.
CREATE OR REPLACE FUNCTION pyqueue.recover_expired(max_jobs integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
-- The lease index, whatever the statistics say: claim_batch calls this on every
-- claim, and a plan cached while the table was nearly empty would otherwise
-- read and sort the whole table each time until autovacuum next analyzes it.
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    retry_ids     bigint[];
    dead_ids      bigint[];
    timed_out_ids bigint[];
    timeouts      text[];
BEGIN
    PERFORM _check_range('max_jobs', max_jobs, 1, 100000);
    SELECT coalesce(array_agg(id) FILTER (WHERE in_time AND attempt < max_attempts), '{}'),
           coalesce(array_agg(id) FILTER (WHERE in_time AND attempt >= max_attempts), '{}'),
           coalesce(array_agg(id) FILTER (WHERE NOT in_time), '{}'),
           coalesce(array_agg(format('timed out: attempt %s ran longer than its timeout of %s',
                                     attempt, timeout)) FILTER (WHERE NOT in_time), '{}')
    INTO retry_ids, dead_ids, timed_out_ids, timeouts
    FROM (
        SELECT id, attempt, max_attempts, timeout, _in_time(started_at, timeout) AS in_time
        FROM jobs
        WHERE status = 'running' AND locked_until < now()
        ORDER BY locked_until
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ) AS expired;
    -- The usual case, on every claim: nothing expired, nothing more to do.
    IF cardinality(retry_ids) + cardinality(dead_ids) + cardinality(timed_out_ids) = 0 THEN
        RETURN 0;
    END IF;

    PERFORM _fail_locked(timed_out_ids, timeouts, NULL);

    UPDATE jobs
    SET status       = 'pending',
        error        = format('lease expired: worker %s stopped without finishing attempt %s',
                              worker, attempt),
        traceback    = NULL,
        failed_at    = now(),
        lease_token  = NULL,
        locked_until = NULL
    WHERE id = ANY (retry_ids);
    PERFORM pg_notify('pyqueue_jobs', queue)
    FROM (SELECT DISTINCT queue FROM jobs WHERE id = ANY (retry_ids || timed_out_ids)) AS q;

    PERFORM _bury(dead_ids, 'lease expired on the last attempt: the worker stopped without finishing', NULL);
    RETURN cardinality(retry_ids) + cardinality(dead_ids) + cardinality(timed_out_ids);
END;
$$;
