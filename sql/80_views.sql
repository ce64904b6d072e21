-- Monitoring views: plain SELECTs for psql users and the monitor role.
-- sql/monitoring.sql shows the everyday queries over them.

-- queue_stats: one row per queue: jobs by status, how many pending jobs are due
-- now, how many of those are retries (an error is set), and how long the oldest
-- due job has waited. dead counts dead letters not yet replayed. paused: the
-- queue is paused (pause_queue); a paused queue with no jobs has a row too.
CREATE OR REPLACE VIEW pyqueue.queue_stats AS
SELECT queue,
       count(*) FILTER (WHERE status = 'pending')                         AS pending,
       count(*) FILTER (WHERE status = 'pending' AND run_at <= now())     AS due,
       count(*) FILTER (WHERE status = 'pending' AND error IS NOT NULL)   AS retrying,
       count(*) FILTER (WHERE status = 'running')                         AS running,
       count(*) FILTER (WHERE status = 'completed')                       AS completed,
       count(*) FILTER (WHERE status = 'cancelled')                       AS cancelled,
       count(*) FILTER (WHERE status = 'dead')                            AS dead,
       date_trunc('second', now() - min(run_at) FILTER (WHERE status = 'pending' AND run_at <= now()))
                                                                          AS oldest_due_age,
       EXISTS (SELECT FROM pyqueue.queues p
               WHERE p.name = j.queue AND p.paused_at IS NOT NULL)        AS paused
FROM (
    SELECT queue, status, run_at, error FROM pyqueue.jobs
    UNION ALL
    SELECT queue, 'dead', NULL, error FROM pyqueue.dead_jobs WHERE retried_as IS NULL
    UNION ALL
    SELECT name, NULL, NULL, NULL FROM pyqueue.queues WHERE paused_at IS NOT NULL
) AS j
GROUP BY queue
ORDER BY queue;

-- throughput: per queue and minute over the last hour, jobs completed and
-- failures (a failed run that will be retried, counted at its latest failure,
-- plus jobs dead-lettered).
CREATE OR REPLACE VIEW pyqueue.throughput AS
SELECT queue, minute,
       count(*) FILTER (WHERE kind = 'completed') AS completed,
       count(*) FILTER (WHERE kind = 'failed')    AS failed
FROM (
    SELECT queue, date_trunc('minute', finished_at) AS minute, 'completed' AS kind
    FROM pyqueue.jobs
    WHERE status = 'completed' AND finished_at > now() - interval '1 hour'
    UNION ALL
    SELECT queue, date_trunc('minute', failed_at), 'failed'
    FROM pyqueue.jobs
    WHERE failed_at > now() - interval '1 hour'
    UNION ALL
    SELECT queue, date_trunc('minute', dead_at), 'failed'
    FROM pyqueue.dead_jobs
    WHERE dead_at > now() - interval '1 hour'
) AS events
GROUP BY queue, minute
ORDER BY minute DESC, queue;

-- running_jobs: every running job, longest running first, with its lease.
CREATE OR REPLACE VIEW pyqueue.running_jobs AS
SELECT id, queue, worker, attempt, max_attempts, progress, progress_message,
       started_at,
       date_trunc('second', now() - started_at) AS running_for,
       locked_until,
       locked_until < now() AS lease_expired
FROM pyqueue.jobs
WHERE status = 'running'
ORDER BY started_at;

-- slow_jobs: running jobs past five minutes or past their lease: the ones a
-- person should look at.
CREATE OR REPLACE VIEW pyqueue.slow_jobs AS
SELECT * FROM pyqueue.running_jobs
WHERE running_for > interval '5 minutes' OR lease_expired;

-- dead_letters: dead-lettered jobs, newest first, with the last error and, once
-- replayed, the id of the new job.
CREATE OR REPLACE VIEW pyqueue.dead_letters AS
SELECT id, queue, attempt, max_attempts, error, payload, created_at, dead_at,
       retried_as, retried_at, traceback
FROM pyqueue.dead_jobs
ORDER BY dead_at DESC, id DESC;
