-- Per-queue settings and the backoff schedule.

-- queue_settings(queue) -> pyqueue.queues
-- The effective settings of a queue: its own row where a column is set, the
-- defaults row '*' otherwise. Works for queues that have no row at all.
-- PL/pgSQL rather than SQL because every enqueue_batch calls it: a SQL function
-- with a SET clause is parsed and planned again on each call, PL/pgSQL keeps
-- its plan for the session.
CREATE OR REPLACE FUNCTION pyqueue.queue_settings(queue text) RETURNS pyqueue.queues
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
DECLARE
    settings queues;
BEGIN
    SELECT queue_settings.queue,
           coalesce(q.max_attempts, d.max_attempts),
           coalesce(q.backoff_base, d.backoff_base),
           coalesce(q.backoff_max, d.backoff_max),
           coalesce(q.retention, d.retention),
           coalesce(q.max_payload_bytes, d.max_payload_bytes),
           coalesce(q.updated_at, d.updated_at),
           coalesce(q.timeout, d.timeout),
           coalesce(q.dead_retention, d.dead_retention),
           coalesce(q.max_result_bytes, d.max_result_bytes),
           -- Flow limits belong to one queue: the defaults row holds none.
           q.concurrency, q.rate_limit, q.rate_period, q.paused_at,
           coalesce(q.unique_mode, d.unique_mode),
           coalesce(q.unique_period, d.unique_period)
    INTO settings
    FROM queues d
    LEFT JOIN queues q ON q.name = queue_settings.queue
    WHERE d.name = '*';
    RETURN settings;
END;
$$;

-- configure_queue(queue, max_attempts, backoff_base, backoff_max, retention,
--                 max_payload_bytes, timeout, dead_retention, max_result_bytes,
--                 concurrency, rate_limit, rate_period, unique_mode, unique_period)
--   -> pyqueue.queues (the effective settings afterwards)
-- Sets the defaults of one queue; '*' sets those of every queue without its own.
-- A NULL argument leaves that setting as it is. Jobs already enqueued keep the
-- max_attempts and timeout they were given. retention: how long finished jobs
-- are kept; dead_retention: how long dead letters are kept; maintain() deletes
-- them after. max_result_bytes: the largest result complete() stores.
-- Flow control (sql/22_flow.sql), for a named queue only: concurrency caps the
-- jobs running at once across all workers; rate_limit and rate_period cap the
-- starts in any window of rate_period (given together the first time). 0 for
-- concurrency or rate_limit removes that limit. unique_mode and unique_period
-- are the queue's defaults for enqueue's (sql/12_unique.sql).
CREATE OR REPLACE FUNCTION pyqueue.configure_queue(
    queue        text,
    max_attempts integer  DEFAULT NULL,
    backoff_base interval DEFAULT NULL,
    backoff_max  interval DEFAULT NULL,
    retention    interval DEFAULT NULL,
    max_payload_bytes integer DEFAULT NULL,
    timeout      interval DEFAULT NULL,
    dead_retention interval DEFAULT NULL,
    max_result_bytes integer DEFAULT NULL,
    concurrency  integer  DEFAULT NULL,
    rate_limit   integer  DEFAULT NULL,
    rate_period  interval DEFAULT NULL,
    unique_mode  text     DEFAULT NULL,
    unique_period interval DEFAULT NULL
) RETURNS pyqueue.queues
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM _authorize(configure_queue.queue, 'work');
    IF queue IS DISTINCT FROM '*' THEN
        PERFORM _check_queue(queue);
    END IF;
    PERFORM _check_range('max_attempts', configure_queue.max_attempts, 1, 1000);
    PERFORM _check_interval('backoff_base', configure_queue.backoff_base);
    PERFORM _check_interval('backoff_max', configure_queue.backoff_max);
    PERFORM _check_interval('retention', configure_queue.retention, allow_zero => true);
    PERFORM _check_range('max_payload_bytes', configure_queue.max_payload_bytes, 1, 268435456);
    PERFORM _check_interval('timeout', configure_queue.timeout);
    PERFORM _check_interval('dead_retention', configure_queue.dead_retention, allow_zero => true);
    PERFORM _check_range('max_result_bytes', configure_queue.max_result_bytes, 1, 268435456);
    PERFORM _check_flow_settings(configure_queue.queue, configure_queue.concurrency,
                                 configure_queue.rate_limit, configure_queue.rate_period,
                                 configure_queue.unique_mode, configure_queue.unique_period);

    INSERT INTO queues AS q (name, max_attempts, backoff_base, backoff_max, retention,
                             max_payload_bytes, timeout, dead_retention, max_result_bytes)
    VALUES (configure_queue.queue, configure_queue.max_attempts, configure_queue.backoff_base,
            configure_queue.backoff_max, configure_queue.retention,
            configure_queue.max_payload_bytes, configure_queue.timeout,
            configure_queue.dead_retention, configure_queue.max_result_bytes)
    ON CONFLICT (name) DO UPDATE
    SET max_attempts = coalesce(excluded.max_attempts, q.max_attempts),
        backoff_base = coalesce(excluded.backoff_base, q.backoff_base),
        backoff_max  = coalesce(excluded.backoff_max, q.backoff_max),
        retention    = coalesce(excluded.retention, q.retention),
        max_payload_bytes = coalesce(excluded.max_payload_bytes, q.max_payload_bytes),
        timeout      = coalesce(excluded.timeout, q.timeout),
        dead_retention = coalesce(excluded.dead_retention, q.dead_retention),
        max_result_bytes = coalesce(excluded.max_result_bytes, q.max_result_bytes),
        updated_at   = now();
    PERFORM _configure_flow(configure_queue.queue, configure_queue.concurrency,
                            configure_queue.rate_limit, configure_queue.rate_period,
                            configure_queue.unique_mode, configure_queue.unique_period);

    RETURN queue_settings(configure_queue.queue);
END;
$$;

-- backoff_delay(attempt, base, cap, jitter) -> interval
-- The wait before the retry that follows failed attempt number `attempt` (1 for
-- the first run). The ceiling grows as base * 2^(attempt-1) up to `cap`; the
-- delay is drawn in [ceiling/2, ceiling] ("equal jitter") from jitter in [0, 1].
-- Because each ceiling is twice the one before until the cap, the delays never
-- shrink from one attempt to the next, whatever the jitter.
CREATE OR REPLACE FUNCTION pyqueue.backoff_delay(
    attempt integer,
    base    interval,
    cap     interval,
    jitter  double precision DEFAULT random()
) RETURNS interval
LANGUAGE sql IMMUTABLE
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
    -- (1 + j) / 2 rather than 0.5 + j / 2: halving a tiny j underflows (an error).
    SELECT make_interval(secs => ceiling * (1 + greatest(0, least(1, jitter))) / 2)
    FROM (
        SELECT least(
            extract(epoch FROM base) * power(2::double precision, least(greatest(attempt, 1) - 1, 60)),
            extract(epoch FROM cap)
        )::double precision AS ceiling
    ) AS c;
$$;
