-- Metrics: the figures a Prometheus exporter publishes per queue, in one view
-- that psql users can read as well (`pyqueue metrics` and the dashboard's
-- /metrics turn each column into a metric with a `queue` label).

-- queue_metrics: one row per queue that holds any job or dead letter.
--   pending, running, completed, cancelled: live jobs by status;
--   dead: dead letters not yet replayed;
--   due: pending jobs whose run_at has come;
--   oldest_due_seconds: how long the oldest due job has waited (0 when none);
--   completed_last_minute, failed_last_minute, dead_last_minute: runs that
--     completed, failed (a retry scheduled, or a lease that expired) or were
--     dead-lettered in the last 60 seconds;
--   lease_expired: running jobs whose lease has run out and that no claim or
--     maintenance pass has recovered yet (their worker died or stalls).
-- Counts are numbers of jobs; a job that failed twice within the minute counts
-- once, at its latest failure.
CREATE OR REPLACE VIEW pyqueue.queue_metrics AS
SELECT queue,
       count(*) FILTER (WHERE status = 'pending')                          AS pending,
       count(*) FILTER (WHERE status = 'running')                          AS running,
       count(*) FILTER (WHERE status = 'completed')                        AS completed,
       count(*) FILTER (WHERE status = 'cancelled')                        AS cancelled,
       count(*) FILTER (WHERE status = 'dead')                             AS dead,
       count(*) FILTER (WHERE status = 'pending' AND run_at <= now())      AS due,
       coalesce(extract(epoch FROM now() - min(run_at) FILTER (
                    WHERE status = 'pending' AND run_at <= now())), 0)::double precision
                                                                           AS oldest_due_seconds,
       count(*) FILTER (WHERE status = 'completed'
                          AND finished_at > now() - interval '1 minute')   AS completed_last_minute,
       count(*) FILTER (WHERE status NOT IN ('dead', 'replayed')
                          AND failed_at > now() - interval '1 minute')     AS failed_last_minute,
       count(*) FILTER (WHERE status IN ('dead', 'replayed')
                          AND failed_at > now() - interval '1 minute')     AS dead_last_minute,
       count(*) FILTER (WHERE status = 'running' AND locked_until < now()) AS lease_expired
FROM (
    SELECT queue, status::text, run_at, finished_at, failed_at, locked_until
    FROM pyqueue.jobs
    UNION ALL
    -- A dead letter's failed_at is the failure that buried it; one replayed
    -- since then still counts as dead-lettered in its minute.
    SELECT queue, CASE WHEN retried_as IS NULL THEN 'dead' ELSE 'replayed' END,
           NULL, NULL, dead_at, NULL
    FROM pyqueue.dead_jobs
) AS j
GROUP BY queue
ORDER BY queue;
