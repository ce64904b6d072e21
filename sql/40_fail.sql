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
                               created_at, started_at, failed_at)
        SELECT g.id, g.queue, g.priority, g.attempt, g.max_attempts, g.payload,
               g.backoff_base, g.backoff_max, g.idempotency_key, g.worker,
               g.progress, g.progress_message, error,
               traceback, g.created_at, g.started_at, now()
        FROM gone g
        RETURNING id
    )
    SELECT coalesce(array_agg(m.id), '{}') INTO buried FROM moved m;
    PERFORM pyqueue._notify_finished(buried);
    RETURN QUERY SELECT unnest(buried);
END;
$$;

-- fail(job_id, lease_token, error, traceback) -> text
-- Records a failed run. With attempts left the job is pending again, due after
-- backoff_delay(attempt, ...) (the job's backoff, else its queue's), with the
-- error kept; returns 'pending'. With none left it moves to the dead-letter
-- table in this transaction; returns 'dead'. Returns 'lost', changing nothing,
-- when the caller no longer holds the job. Raises when no job has that id.
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
#variable_conflict use_column
DECLARE
    job      jobs%ROWTYPE;
    settings queues%ROWTYPE;
    message  text := left(coalesce(fail.error, '(no error message)'), 10000);
    trace    text := left(fail.traceback, 100000);
BEGIN
    SELECT * INTO job FROM jobs
    WHERE id = job_id AND status = 'running' AND lease_token = fail.lease_token
    FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM _require_job(job_id);
        RETURN 'lost';
    END IF;

    IF job.attempt >= job.max_attempts THEN
        PERFORM _bury(ARRAY[job_id], message, trace);
        RETURN 'dead';
    END IF;

    settings := queue_settings(job.queue);
    UPDATE jobs
    SET status       = 'pending',
        run_at       = now() + backoff_delay(job.attempt,
                                             coalesce(job.backoff_base, settings.backoff_base),
                                             coalesce(job.backoff_max, settings.backoff_max)),
        error        = message,
        traceback    = trace,
        failed_at    = now(),
        lease_token  = NULL,
        locked_until = NULL
    WHERE id = job_id;
    RETURN 'pending';
END;
$$;
