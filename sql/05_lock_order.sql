-- Lock order: the one order in which pyqueue locks several job rows.
--
-- A statement that may wait for job rows it is going to change locks them
-- first, all of them, in ascending id order (_lock_held), and only then
-- changes them. Two such statements on the same jobs then wait for each other
-- at most in one direction, never in a cycle: without it, a worker's
-- heartbeat (on one connection) and its complete_batch (on another) each hold
-- some of their jobs and wait for the other's, and PostgreSQL fails one of
-- them with "deadlock detected".
--
--   heartbeat, complete_batch, release, fail_batch    _lock_held, by id
--   complete, report_progress, cancel                 one row: no order needed
--   claim_batch, recover_expired, maintain's purges   FOR UPDATE SKIP LOCKED:
--       they never wait for a row, so they are never part of a cycle; the rows
--       they then change are the ones they locked
--
-- tests/test_lock_order.py runs heartbeats against each of the batch outcomes
-- on the same jobs, in different orders, and finds no deadlock.

-- _lock_held(job_ids, lease_tokens): locks the rows of the jobs that the pairs
-- (id, lease token) still hold, in ascending id order, waiting for each in
-- turn. Pairs that hold nothing lock nothing. Call it before an UPDATE or
-- DELETE of those rows in the same transaction.
CREATE OR REPLACE FUNCTION pyqueue._lock_held(job_ids bigint[], lease_tokens uuid[]) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    -- LockRows runs above the sort, so the rows are locked in id order.
    PERFORM 1
    FROM pyqueue.jobs j, unnest(job_ids, lease_tokens) AS h(id, token)
    WHERE j.id = h.id AND j.lease_token = h.token
    ORDER BY j.id
    FOR UPDATE OF j;
END;
$$;
