-- Operator actions: cancel, replay a dead letter, purge finished jobs.

-- cancel(job_id) -> boolean
-- Cancels a pending or running job. A running job's worker loses it: its later
-- complete or fail reports it lost. Returns false, changing nothing, when the
-- job had already finished (completed, cancelled or dead). Raises when no job
-- has that id.
CREATE OR REPLACE FUNCTION pyqueue.cancel(job_id bigint) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
BEGIN
    PERFORM _authorize_job(job_id, 'work');
    UPDATE jobs
    SET status       = 'cancelled',
        finished_at  = now(),
        lease_token  = NULL,
        locked_until = NULL
    WHERE id = job_id AND 'cancel' = ANY (job_actions(status));
    IF FOUND THEN
        PERFORM _notify_finished(ARRAY[job_id]);
        RETURN true;
    END IF;
    PERFORM _require_job(job_id);
    RETURN false;
END;
$$;

-- retry_dead(job_id) -> bigint (the new job's id)
-- Replays a dead-lettered job as a new pending job, due now, with the same
-- queue, payload, priority, attempt limit, backoff and timeout, in one
-- transaction. The dead letter stays, marked with the new id; replaying it
-- again returns that same id instead of a second job. The idempotency key is
-- not carried over: it was released when the job died and may have been taken
-- since. Raises when no dead-lettered job has that id.
CREATE OR REPLACE FUNCTION pyqueue.retry_dead(job_id bigint) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
DECLARE
    dead   dead_jobs%ROWTYPE;
    new_id bigint;
BEGIN
    PERFORM _authorize_job(job_id, 'enqueue');
    SELECT * INTO dead FROM dead_jobs WHERE id = job_id FOR UPDATE;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM jobs WHERE id = job_id) THEN
            RAISE EXCEPTION 'pyqueue: job % is not dead-lettered (status %)', job_id,
                (SELECT status FROM jobs WHERE id = job_id)
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        PERFORM _job_not_found(job_id);
    END IF;
    IF dead.retried_as IS NOT NULL THEN
        RETURN dead.retried_as;
    END IF;

    INSERT INTO jobs (queue, payload, priority, max_attempts, backoff_base, backoff_max, timeout)
    VALUES (dead.queue, dead.payload, dead.priority, dead.max_attempts,
            dead.backoff_base, dead.backoff_max, dead.timeout)
    RETURNING id INTO new_id;
    UPDATE dead_jobs SET retried_as = new_id, retried_at = now() WHERE id = job_id;
    PERFORM pg_notify('pyqueue_jobs', dead.queue);
    RETURN new_id;
END;
$$;

-- purge(older_than, queue) -> bigint (the number of rows deleted)
-- Deletes completed and cancelled jobs that finished more than older_than ago
-- (NULL: each queue's retention), and dead letters already replayed as long
-- ago. Dead letters never replayed are kept until an operator acts. queue NULL
-- purges every queue.
CREATE OR REPLACE FUNCTION pyqueue.purge(older_than interval DEFAULT NULL, queue text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    jobs_deleted bigint;
    dead_deleted bigint;
BEGIN
    PERFORM _authorize(coalesce(queue, '*'), 'work');
    PERFORM _check_interval('older_than', older_than, allow_zero => true);
    IF queue IS NOT NULL THEN
        PERFORM _check_queue(queue);
    END IF;

    DELETE FROM jobs j
    USING queues d
    WHERE d.name = '*'
      AND j.status IN ('completed', 'cancelled')
      AND (queue IS NULL OR j.queue = queue)
      AND j.finished_at < now() - coalesce(
              older_than,
              (SELECT own.retention FROM queues own WHERE own.name = j.queue),
              d.retention);
    GET DIAGNOSTICS jobs_deleted = ROW_COUNT;

    DELETE FROM dead_jobs dj
    USING queues d
    WHERE d.name = '*'
      AND dj.retried_as IS NOT NULL
      AND (queue IS NULL OR dj.queue = queue)
      AND dj.retried_at < now() - coalesce(
              older_than,
              (SELECT own.retention FROM queues own WHERE own.name = dj.queue),
              d.retention);
    GET DIAGNOSTICS dead_deleted = ROW_COUNT;
    RETURN jobs_deleted + dead_deleted;
END;
$$;
