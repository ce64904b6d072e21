-- Everyday psql queries for watching pyqueue. Not part of the schema: run them
-- one by one, or all at once with  psql "$DATABASE_URL" -f sql/monitoring.sql
-- The monitor role (pyqueue_monitor) may run every query that reads a view;
-- list_jobs needs the producer role (or the schema owner).

-- How is each queue doing? Jobs by status, how many are due now, how many of
-- those are retries, and how long the oldest due job has been waiting. A
-- growing oldest_due_age means workers are not keeping up.
SELECT * FROM pyqueue.queue_stats;

-- The figures Prometheus scrapes (`pyqueue metrics`, the dashboard's /metrics):
-- per queue, jobs by status, the oldest due job's wait in seconds, what
-- completed, failed and died in the last minute, and leases run out.
SELECT * FROM pyqueue.queue_metrics;

-- Work done per minute over the last hour, newest first.
SELECT * FROM pyqueue.throughput LIMIT 20;

-- What is running now, longest first, with progress and lease.
SELECT id, queue, worker, attempt, progress, progress_message, running_for, lease_expired
FROM pyqueue.running_jobs;

-- Jobs a person should look at: running for more than five minutes, or whose
-- lease ran out (their worker is gone; the next claim recovers them).
SELECT id, queue, worker, running_for, lease_expired FROM pyqueue.slow_jobs;

-- The same with a threshold of your own.
SELECT id, queue, worker, running_for
FROM pyqueue.running_jobs
WHERE running_for > interval '30 seconds';

-- Dead letters, newest first: what failed for good, and why.
SELECT id, queue, attempt, left(error, 80) AS error, dead_at, retried_as
FROM pyqueue.dead_letters
LIMIT 20;

-- Retries waiting for their turn: pending jobs that have failed before.
SELECT id, queue, attempt, max_attempts, run_at, left(error, 80) AS error
FROM pyqueue.list_jobs('pending')
WHERE error IS NOT NULL;

-- Size of the hot table and its indexes (watch for bloat after heavy churn).
SELECT pg_size_pretty(pg_total_relation_size('pyqueue.jobs')) AS jobs_total,
       pg_size_pretty(pg_indexes_size('pyqueue.jobs'))        AS jobs_indexes,
       pg_size_pretty(pg_total_relation_size('pyqueue.dead_jobs')) AS dead_total;

-- Queues with flow limits or paused (schema owner: reads pyqueue.queues):
-- their limits, jobs running now, and starts in the current rate window.
SELECT q.name, q.concurrency, q.rate_limit, q.rate_period, q.paused_at,
       (SELECT count(*) FROM pyqueue.jobs j
        WHERE j.status = 'running' AND j.queue = q.name)          AS running,
       (SELECT count(*) FROM pyqueue.queue_flow f, unnest(f.starts) AS t
        WHERE f.queue = q.name AND t > now() - q.rate_period)    AS started_in_window
FROM pyqueue.queues q
WHERE q.concurrency IS NOT NULL OR q.rate_limit IS NOT NULL OR q.paused_at IS NOT NULL
ORDER BY q.name;

-- Operator actions (schema owner only), for reference:
--   SELECT pyqueue.retry_dead(42);          -- replay dead letter 42 as a new job
--   SELECT pyqueue.cancel(43);              -- cancel a pending or running job
--   SELECT pyqueue.purge();                 -- delete finished jobs past retention
--   SELECT pyqueue.configure_queue('emails', max_attempts => 5,
--                                  backoff_base => '2 seconds');
--   SELECT pyqueue.pause_queue('emails');   -- stop claims; resume_queue undoes it
