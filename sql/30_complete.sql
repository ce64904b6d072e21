-- Complete: a worker reports success. Finished jobs are announced on channel
-- 'pyqueue_finished' (payload: job ids, comma-separated) so that waiters wake.

-- _notify_finished(job_ids): one NOTIFY per chunk of ids, each well under the
-- 8000-byte payload limit. PL/pgSQL, not SQL, so that its plan is kept: a SQL
-- function with a SET clause is planned again on every call.
CREATE OR REPLACE FUNCTION pyqueue._notify_finished(job_ids bigint[]) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('pyqueue_finished', string_agg(id::text, ','))
    FROM unnest(job_ids) WITH ORDINALITY AS f(id, ord)
    GROUP BY (ord - 1) / 400;
END;
$$;

-- _check_results(job_ids, results): each result is within the max_result_bytes
-- of its job's queue (bytes of its jsonb form), so that no result fills the
-- table. Raises SQLSTATE 22023 (invalid_parameter_value, a data exception),
-- naming the job, its queue, the size and the limit, before anything is
-- written: the caller learns why, and a worker records it as the job's
-- failure. Results no larger than the smallest limit of any queue, the
-- everyday case, are not looked up at all.
CREATE OR REPLACE FUNCTION pyqueue._check_results(job_ids bigint[], results jsonb[]) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    largest  integer;
    too_big  record;
BEGIN
    SELECT max(pg_column_size(r.result)) INTO largest FROM unnest(results) AS r(result);
    IF largest IS NULL
       OR largest <= (SELECT min(q.max_result_bytes) FROM pyqueue.queues q) THEN
        RETURN;
    END IF;
    SELECT j.id, j.queue, pg_column_size(r.result) AS size, s.max_result_bytes AS max_bytes
    INTO too_big
    FROM unnest(job_ids, results) AS r(id, result)
    JOIN pyqueue.jobs j ON j.id = r.id
    CROSS JOIN LATERAL pyqueue.queue_settings(j.queue) AS s
    WHERE pg_column_size(r.result) > s.max_result_bytes
    ORDER BY j.id
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'pyqueue: the result of job % is % bytes, over the limit of queue % (% bytes)',
            too_big.id, too_big.size, quote_literal(too_big.queue), too_big.max_bytes
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Store large results elsewhere and return a reference to them, '
                         'or raise the limit with configure_queue(max_result_bytes => ...).';
    END IF;
END;
$$;

-- complete(job_id, lease_token, result) -> boolean
-- Marks a running job completed and stores the handler's JSON result. Returns
-- false, changing nothing, when the caller no longer holds the job (its lease
-- was recovered and the job claimed again, it was cancelled, or its run is
-- past its timeout). Raises when no job has that id, or (22023) when the
-- result is over its queue's max_result_bytes, storing nothing.
CREATE OR REPLACE FUNCTION pyqueue.complete(job_id bigint, lease_token uuid, result jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM _authorize_leases(ARRAY[job_id], ARRAY[complete.lease_token], 'work');
    PERFORM _check_results(ARRAY[job_id], ARRAY[complete.result]);
    UPDATE jobs
    SET status       = 'completed',
        result       = complete.result,
        finished_at  = now(),
        lease_token  = NULL,
        locked_until = NULL
    WHERE id = job_id AND status = 'running' AND lease_token = complete.lease_token
      AND _in_time(started_at, timeout);
    IF FOUND THEN
        PERFORM _notify_finished(ARRAY[job_id]);
        RETURN true;
    END IF;
    PERFORM _require_job(job_id);
    RETURN false;
END;
$$;

-- complete_or_raise(job_id, lease_token, result) -> void
-- complete() for a handler that writes its effects in the same transaction as
-- its completion, for effects that happen exactly once: when the caller no
-- longer holds the job (its lease was lost and the job recovered, claimed
-- again, cancelled, or its run is past its timeout, or it was completed
-- already), it raises SQLSTATE 55000 (object_not_in_prerequisite_state), so
-- that the caller's whole transaction rolls back and its writes never land
-- for a run that lost the job. Raises as complete() does when no job has that
-- id. From its call to the commit, the job's row stays locked: no recovery or
-- cancel can take the job meanwhile, and the worker's heartbeats wait for it;
-- so call it last, just before COMMIT.
CREATE OR REPLACE FUNCTION pyqueue.complete_or_raise(
    job_id      bigint,
    lease_token uuid,
    result      jsonb DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
BEGIN
    IF job_id IS NULL OR lease_token IS NULL THEN
        RAISE EXCEPTION 'pyqueue: job_id and lease_token must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT complete(job_id, lease_token, result) THEN
        RAISE EXCEPTION 'pyqueue: job % is no longer held with this lease token '
                        '(cancelled, timed out, completed, or recovered after its lease '
                        'expired): not completed, roll the transaction back', job_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END;
$$;

-- complete_batch(job_ids, lease_tokens, results) -> SETOF bigint
-- complete() for many jobs in one statement. results, when given, pairs with
-- job_ids (NULL: no results). Returns the ids that were completed; the others
-- were no longer held by the caller (or do not exist). A result over its
-- queue's max_result_bytes refuses the whole call (22023, naming the job), so
-- that the caller can fail that job and complete the others. Locks the held
-- jobs in id order first (sql/05_lock_order.sql).
CREATE OR REPLACE FUNCTION pyqueue.complete_batch(
    job_ids      bigint[],
    lease_tokens uuid[],
    results      jsonb[] DEFAULT NULL
) RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
-- One primary-key lookup per pair, whatever the statistics say: a plan cached
-- while the table was nearly empty would otherwise hash or merge-join the whole
-- table on every call until autovacuum next analyzes it (see claim_batch).
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    done bigint[];
BEGIN
    PERFORM _check_pairs(job_ids, lease_tokens);
    IF results IS NOT NULL AND cardinality(results) <> cardinality(job_ids) THEN
        RAISE EXCEPTION 'pyqueue: results has % elements, job_ids has %',
            cardinality(results), cardinality(job_ids)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM _authorize_leases(job_ids, lease_tokens, 'work');
    PERFORM _check_results(job_ids, results);
    -- In id order, so that a heartbeat of the same jobs never deadlocks with it.
    PERFORM _lock_held(job_ids, lease_tokens);
    -- No "status = 'running'" here: a matching lease token already means
    -- running (the table's CHECK), and that condition would let the planner
    -- drive the join from jobs_lease_idx, rescanning the arrays once per
    -- running job (quadratic in the batch). Without it, each pair is one
    -- primary-key lookup.
    WITH finished AS (
        UPDATE jobs j
        SET status       = 'completed',
            result       = results[d.ord],
            finished_at  = now(),
            lease_token  = NULL,
            locked_until = NULL
        FROM unnest(job_ids, lease_tokens) WITH ORDINALITY AS d(id, token, ord)
        WHERE j.id = d.id AND j.lease_token = d.token AND _in_time(j.started_at, j.timeout)
        RETURNING j.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO done FROM finished;
    PERFORM _notify_finished(done);
    RETURN QUERY SELECT unnest(done);
END;
$$;
