-- Claim: lease due jobs to a worker, and hand back jobs it never started.

-- claim_batch(queues, worker, batch_size, lease, ahead) -> SETOF pyqueue.claimed_job
-- Leases up to batch_size due pending jobs of the given queues to `worker` (a
-- name for people to read) for `lease`: highest priority first, then earliest
-- run_at, then lowest id, and returns them in that order. Rows locked by
-- concurrent claims are skipped, never waited for, so two claims never return
-- the same job. Each claimed job is running, its attempt counted. A job with a
-- timeout is leased until its timeout at most.
--
-- Recovery of expired leases is part of the claim: the first claimer to take a
-- transaction-level advisory lock runs recover_expired() before claiming, and
-- claimers that find it taken skip it. So a dead worker's jobs are pending again
-- within their lease plus one claim interval, with no janitor to deploy.
--
-- Queues with a concurrency or rate limit, or paused, give at most what
-- sql/22_flow.sql allows; claims of such a queue run one at a time.
--
-- `ahead` (0 by default) says how many of the batch_size jobs the worker
-- claims ahead of its free handler slots, to start as slots free up. A job
-- taken ahead is running here while it waits in the worker's memory, so the
-- claim takes none ahead:
-- - when any of the queues has a concurrency or rate limit (the claim takes at
--   most batch_size - ahead jobs): it would hold budget of the limit that
--   another worker could use now;
-- - that has a timeout: its run is timed from the claim, and it would spend
--   its timeout waiting.
CREATE OR REPLACE FUNCTION pyqueue.claim_batch(
    queues     text[],
    worker     text,
    batch_size integer  DEFAULT 1,
    lease      interval DEFAULT interval '30 seconds',
    ahead      integer  DEFAULT 0
) RETURNS SETOF pyqueue.claimed_job
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
-- One plan per statement for every call, made once per session: left to
-- choose, PostgreSQL plans the pick anew for each call's arguments, which costs
-- more than running it. The plan does not depend on them (index scans per queue
-- and priority, primary-key lookups), but its row estimates for unknown
-- arguments are large enough to start JIT compilation, tens of milliseconds
-- spent on a query that runs in one: hence no JIT here. And no sequential or
-- bitmap scans: a plan made while the table is nearly empty (a new queue, or
-- one just drained) would otherwise read and sort the whole table on every
-- claim until autovacuum next analyzes it, and a busy queue falls behind
-- within seconds.
SET plan_cache_mode = force_generic_plan
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
    picked      bigint[];
    -- One fencing token per claim, shared by the jobs it leases: with a job's
    -- id it names this claim of that job, as a token per job would, for one
    -- random draw a claim instead of one a job.
    claim_token uuid := gen_random_uuid();
    -- Per element of queues, the most this claim may take of it (sql/22_flow.sql);
    -- NULL when none of the queues is limited or paused.
    allowed     integer[];
BEGIN
    PERFORM _authorize_queues(queues, 'work');
    IF coalesce(cardinality(queues), 0) = 0 THEN
        RAISE EXCEPTION 'pyqueue: queues must name at least one queue'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF worker IS NULL OR worker = '' THEN
        RAISE EXCEPTION 'pyqueue: worker must name the worker'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch_size IS NULL THEN
        RAISE EXCEPTION 'pyqueue: batch_size must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM _check_range('batch_size', batch_size, 1, 10000);
    IF lease IS NULL THEN
        RAISE EXCEPTION 'pyqueue: lease must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM _check_interval('lease', lease);
    IF ahead IS NULL THEN
        RAISE EXCEPTION 'pyqueue: ahead must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM _check_range('ahead', ahead, 0, batch_size);

    IF pg_try_advisory_xact_lock(hashtext('pyqueue.recover_expired')) THEN
        PERFORM recover_expired();
    END IF;

    -- Flow control: one primary-key probe when no queue is limited.
    IF EXISTS (SELECT FROM queues f
               WHERE f.name = ANY (claim_batch.queues)
                 AND (f.concurrency IS NOT NULL OR f.rate_limit IS NOT NULL
                      OR f.paused_at IS NOT NULL)) THEN
        IF claim_batch.ahead > 0 AND EXISTS (
            SELECT FROM queues f
            WHERE f.name = ANY (claim_batch.queues)
              AND (f.concurrency IS NOT NULL OR f.rate_limit IS NOT NULL)) THEN
            batch_size := claim_batch.batch_size - claim_batch.ahead;
            ahead := 0;
            IF batch_size = 0 THEN
                RETURN;
            END IF;
        END IF;
        allowed := _flow_allowances(claim_batch.queues, claim_batch.batch_size);
    END IF;

    -- The jobs to claim, locked; then the update, by primary key. Two
    -- statements, not one: as one, the generic plan joins the picked jobs to
    -- the table by hash, reading all of it.
    picked := ARRAY(
        -- Per queue, merged and cut to batch_size: a single ORDER BY over
        -- queue = ANY(...) would sort every due job of all the queues.
        SELECT c.id
        FROM unnest(queues) WITH ORDINALITY AS q(name, ord)
        CROSS JOIN LATERAL (
            -- The distinct priorities of the queue's pending jobs, highest
            -- first, one backward index probe each (a "skip scan"). Then per priority,
            -- the due jobs by run_at: (queue, priority, run_at <= now()) is one
            -- index range that ends at the first job not yet due. Scanning
            -- (queue, priority DESC, run_at) in one pass instead would read
            -- through every scheduled job whenever fewer than batch_size are due.
            WITH RECURSIVE priorities (priority) AS (
                (SELECT j.priority FROM jobs j
                 WHERE j.status = 'pending' AND j.queue = q.name
                 ORDER BY j.priority DESC LIMIT 1)
                UNION ALL
                SELECT (SELECT j.priority FROM jobs j
                        WHERE j.status = 'pending' AND j.queue = q.name
                          AND j.priority < p.priority
                        ORDER BY j.priority DESC LIMIT 1)
                FROM priorities p
                WHERE p.priority IS NOT NULL
            )
            SELECT due.id, due.priority, due.run_at
            FROM priorities p
            CROSS JOIN LATERAL (
                SELECT j.id, j.priority, j.run_at
                FROM jobs j
                WHERE j.status = 'pending'
                  AND j.queue = q.name
                  AND j.priority = p.priority
                  AND j.run_at <= now()
                ORDER BY j.run_at, j.id
                LIMIT coalesce(allowed[q.ord], claim_batch.batch_size)
                FOR UPDATE SKIP LOCKED
            ) AS due
            LIMIT coalesce(allowed[q.ord], claim_batch.batch_size)
        ) AS c
        ORDER BY c.priority DESC, c.run_at, c.id
        LIMIT claim_batch.batch_size
    );
    IF claim_batch.ahead > 0 THEN
        -- The jobs past the free slots' share, in claim order, only without a
        -- timeout; the others stay pending (locked until this claim commits).
        picked := ARRAY(
            SELECT p.id
            FROM unnest(picked) WITH ORDINALITY AS p(id, ord)
            JOIN jobs j ON j.id = p.id
            WHERE p.ord <= claim_batch.batch_size - claim_batch.ahead OR j.timeout IS NULL
            ORDER BY p.ord
        );
    END IF;

    RETURN QUERY
    WITH claimed AS (
        UPDATE jobs j
        SET status       = 'running',
            attempt      = j.attempt + 1,
            lease_token  = claim_token,
            -- A run's lease never outlasts its timeout: recovery fails it then.
            locked_until = now() + least(claim_batch.lease, j.timeout),
            worker       = claim_batch.worker,
            started_at   = now(),
            progress     = NULL,
            progress_message = NULL
        WHERE j.id = ANY (picked)
        RETURNING j.id, j.queue, j.payload, j.attempt, j.max_attempts, j.lease_token,
                  j.locked_until, j.priority, j.run_at
    )
    -- UPDATE ... RETURNING follows no order: sort so that a worker running the
    -- batch in order starts the most urgent job first.
    SELECT c.id, c.queue, c.payload, c.attempt, c.max_attempts, c.lease_token, c.locked_until
    FROM claimed c
    ORDER BY c.priority DESC, c.run_at, c.id;
    IF allowed IS NOT NULL THEN
        PERFORM _flow_record(claim_batch.queues, picked);
    END IF;
END;
$$;

-- release(job_ids, lease_tokens) -> SETOF bigint (the ids handed back)
-- Hands back claimed jobs the worker never started (on shutdown): they are
-- pending again, in their old place in line (run_at unchanged), and the claim
-- is not counted as an attempt. Pairs whose token no longer holds the job are
-- ignored. Locks the held jobs in id order first (sql/05_lock_order.sql).
CREATE OR REPLACE FUNCTION pyqueue.release(job_ids bigint[], lease_tokens uuid[]) RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
BEGIN
    PERFORM _check_pairs(job_ids, lease_tokens);
    PERFORM _authorize_leases(job_ids, lease_tokens, 'work');
    PERFORM _lock_held(job_ids, lease_tokens);
    RETURN QUERY
    UPDATE jobs j
    SET status       = 'pending',
        attempt      = j.attempt - 1,
        lease_token  = NULL,
        locked_until = NULL
    FROM unnest(job_ids, lease_tokens) AS h(id, token)
    -- A matching token means running (the table's CHECK); see complete_batch
    -- for why status is not tested here.
    WHERE j.id = h.id AND j.lease_token = h.token
    RETURNING j.id;
    PERFORM pg_notify('pyqueue_jobs', queue)
    FROM (SELECT DISTINCT queue FROM jobs WHERE id = ANY (job_ids) AND status = 'pending') AS q;
END;
$$;
