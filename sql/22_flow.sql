-- Flow control: fleet-wide limits per queue, enforced by claim_batch, and
-- pause/resume. Settings live in pyqueue.queues (configure_queue); the ledger
-- and the lock of a limited queue in pyqueue.queue_flow.
--
--   concurrency  at most N jobs of the queue running at once, across all
--                workers. Claims of the queue take its queue_flow row in turn
--                and count its running jobs under that lock; only a claim
--                makes a job running, so no interleaving of claims,
--                completions, failures, cancels or lease recoveries exceeds N.
--   rate_limit   at most N starts in any window of rate_period ("sliding
--   rate_period  log"): the ledger keeps the start times of the last
--                rate_period, and a claim takes at most N minus their number.
--                Chosen over a fixed window, which lets 2N start around a
--                window's edge, and over a token bucket, which lets bursts
--                exceed N in some window: "at most N in any period" is what a
--                partner's limit says. A start is the claim's transaction time
--                (the job's started_at).
--   paused_at    set by pause_queue: claims take no job of the queue; running
--                jobs finish; enqueue goes on.
--
-- A queue with none of these set is claimed without any of this: claim_batch
-- checks for limits with one primary-key probe of pyqueue.queues. A limit set
-- while claims are under way holds for the claims that start after it commits.

-- _check_flow_settings(queue, concurrency, rate_limit, rate_period,
--                      unique_mode, unique_period)
-- The arguments of configure_queue that this file adds; 0 removes a limit.
CREATE OR REPLACE FUNCTION pyqueue._check_flow_settings(
    queue         text,
    concurrency   integer,
    rate_limit    integer,
    rate_period   interval,
    unique_mode   text,
    unique_period interval
) RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF queue = '*' AND num_nonnulls(concurrency, rate_limit, rate_period) > 0 THEN
        RAISE EXCEPTION 'pyqueue: concurrency and rate limits belong to one queue, not to ''*'''
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pyqueue._check_range('concurrency', concurrency, 0, 100000);
    PERFORM pyqueue._check_range('rate_limit', rate_limit, 0, 10000);
    PERFORM pyqueue._check_interval('rate_period', rate_period);
    PERFORM pyqueue._check_unique_options(unique_mode, unique_period);
END;
$$;

-- _configure_flow(queue, concurrency, rate_limit, rate_period, unique_mode,
--                 unique_period): configure_queue's part for these settings,
-- on the queue's row (which configure_queue has just made sure of). NULL leaves
-- a setting as it is; 0 removes a limit (rate_limit 0 removes the period too).
CREATE OR REPLACE FUNCTION pyqueue._configure_flow(
    queue         text,
    concurrency   integer,
    rate_limit    integer,
    rate_period   interval,
    unique_mode   text,
    unique_period interval
) RETURNS void
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    old pyqueue.queues;
    new_limit  integer;
    new_period interval;
BEGIN
    IF num_nonnulls(concurrency, rate_limit, rate_period, unique_mode, unique_period) = 0 THEN
        RETURN;
    END IF;
    SELECT * INTO old FROM pyqueue.queues WHERE name = _configure_flow.queue FOR UPDATE;
    new_limit := CASE WHEN _configure_flow.rate_limit = 0 THEN NULL
                      ELSE coalesce(_configure_flow.rate_limit, old.rate_limit) END;
    new_period := CASE WHEN _configure_flow.rate_limit = 0 THEN NULL
                       ELSE coalesce(_configure_flow.rate_period, old.rate_period) END;
    IF new_limit IS NOT NULL AND new_period IS NULL THEN
        RAISE EXCEPTION 'pyqueue: rate_limit needs rate_period (the window it counts starts in)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF new_limit IS NULL AND new_period IS NOT NULL THEN
        RAISE EXCEPTION 'pyqueue: rate_period needs rate_limit (the starts allowed in each period)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE pyqueue.queues q
    SET concurrency   = CASE WHEN _configure_flow.concurrency = 0 THEN NULL
                             ELSE coalesce(_configure_flow.concurrency, q.concurrency) END,
        rate_limit    = new_limit,
        rate_period   = new_period,
        unique_mode   = coalesce(_configure_flow.unique_mode, q.unique_mode),
        unique_period = coalesce(_configure_flow.unique_period, q.unique_period)
    WHERE q.name = _configure_flow.queue;
END;
$$;

-- _flow_allowances(queues, batch_size) -> integer[]
-- For claim_batch: per element of queues, how many jobs the claim may take of
-- that queue (NULL: no limit, batch_size). Takes the queue_flow row of every
-- limited queue, in name order (so that claims never wait on each other in a
-- cycle), and holds it to the end of the claim's transaction: claims of a
-- limited queue run one after another, each seeing the jobs the ones before
-- it started. The row is written, not only locked, so that a claim in a
-- REPEATABLE READ or SERIALIZABLE transaction, whose snapshot could miss an
-- earlier claim, fails with a serialization error instead of counting wrong.
-- A queue named twice is given its allowance once.
CREATE OR REPLACE FUNCTION pyqueue._flow_allowances(queues text[], batch_size integer)
RETURNS integer[]
LANGUAGE plpgsql
AS $$
DECLARE
    allowed integer[] := array_fill(NULL::integer, ARRAY[cardinality(queues)]);
    q       record;
    starts  timestamptz[];
    allow   integer;
BEGIN
    FOR q IN
        SELECT s.name, s.concurrency, s.rate_limit, s.rate_period, s.paused_at,
               array_agg(u.ord ORDER BY u.ord) AS places
        FROM unnest(queues) WITH ORDINALITY AS u(name, ord)
        JOIN pyqueue.queues s ON s.name = u.name
        WHERE s.concurrency IS NOT NULL OR s.rate_limit IS NOT NULL OR s.paused_at IS NOT NULL
        GROUP BY s.name, s.concurrency, s.rate_limit, s.rate_period, s.paused_at
        ORDER BY s.name
    LOOP
        INSERT INTO pyqueue.queue_flow AS f (queue, claimed_at)
        VALUES (q.name, now())
        ON CONFLICT (queue) DO UPDATE SET claimed_at = now()
        RETURNING f.starts INTO starts;

        allow := batch_size;
        IF q.paused_at IS NOT NULL THEN
            allow := 0;
        END IF;
        IF q.concurrency IS NOT NULL AND allow > 0 THEN
            allow := least(allow, greatest(0, q.concurrency - (
                SELECT count(*) FROM pyqueue.jobs j
                WHERE j.status = 'running' AND j.queue = q.name)));
        END IF;
        IF q.rate_limit IS NOT NULL AND allow > 0 THEN
            allow := least(allow, greatest(0, q.rate_limit - (
                SELECT count(*) FROM unnest(starts) AS t
                WHERE t > now() - q.rate_period)));
        END IF;
        allowed[q.places[1]] := allow;
        FOR i IN 2 .. cardinality(q.places) LOOP
            allowed[q.places[i]] := 0;
        END LOOP;
    END LOOP;
    RETURN allowed;
END;
$$;

-- _flow_record(queues, job_ids): for claim_batch, after it claimed job_ids
-- under _flow_allowances: adds their starts to the ledgers of the rate-limited
-- queues among queues, dropping starts older than the window. Looks at the
-- jobs only when one of the queues has a rate limit.
CREATE OR REPLACE FUNCTION pyqueue._flow_record(queues text[], job_ids bigint[]) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    IF cardinality(job_ids) = 0
       OR NOT EXISTS (SELECT FROM pyqueue.queues s
                      WHERE s.name = ANY (queues) AND s.rate_limit IS NOT NULL) THEN
        RETURN;
    END IF;
    UPDATE pyqueue.queue_flow f
    SET starts = ARRAY(SELECT t FROM unnest(f.starts) AS t WHERE t > now() - s.rate_period)
                 || array_fill(now(), ARRAY[c.started])
    FROM (SELECT j.queue, count(*)::integer AS started
          FROM pyqueue.jobs j WHERE j.id = ANY (job_ids)
          GROUP BY j.queue) AS c
    JOIN pyqueue.queues s ON s.name = c.queue
    WHERE f.queue = c.queue AND s.rate_limit IS NOT NULL;
END;
$$;

-- claim_wait(queues) -> interval
-- How long a worker serving these queues, whose last claim found nothing,
-- should wait before it claims again. NULL when one of them has no limit, or
-- has room: a NOTIFY from enqueue may bring work, so wait for one as usual.
-- Otherwise every queue is held back: the time until the first rate-limited
-- one gets budget back (the oldest start in its window leaves it), or an hour
-- when only a completion, resume_queue or configure_queue can free one (the
-- worker's poll interval, shorter, bounds the wait).
CREATE OR REPLACE FUNCTION pyqueue.claim_wait(queues text[]) RETURNS interval
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
DECLARE
    q      record;
    wait   interval := interval '1 hour';
    recent timestamptz[];
BEGIN
    IF coalesce(cardinality(queues), 0) = 0 THEN
        RAISE EXCEPTION 'pyqueue: queues must name at least one queue'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR q IN
        SELECT u.name, s.concurrency, s.rate_limit, s.rate_period, s.paused_at, f.starts
        FROM (SELECT DISTINCT name FROM unnest(queues) AS u(name)) AS u
        LEFT JOIN queues s ON s.name = u.name
        LEFT JOIN queue_flow f ON f.queue = u.name
    LOOP
        IF q.concurrency IS NULL AND q.rate_limit IS NULL AND q.paused_at IS NULL THEN
            RETURN NULL;
        END IF;
        CONTINUE WHEN q.paused_at IS NOT NULL;
        CONTINUE WHEN q.concurrency IS NOT NULL
                  AND (SELECT count(*) FROM jobs j
                       WHERE j.status = 'running' AND j.queue = q.name) >= q.concurrency;
        IF q.rate_limit IS NULL THEN
            RETURN NULL;
        END IF;
        recent := ARRAY(SELECT t FROM unnest(q.starts) AS t
                        WHERE t > now() - q.rate_period ORDER BY t);
        IF coalesce(cardinality(recent), 0) < q.rate_limit THEN
            RETURN NULL;
        END IF;
        -- Budget returns when enough starts have left the window.
        wait := least(wait, greatest(interval '0',
            recent[cardinality(recent) - q.rate_limit + 1] + q.rate_period - clock_timestamp()));
    END LOOP;
    RETURN wait;
END;
$$;

-- pause_queue(queue) -> timestamptz (since when the queue is paused)
-- Stops claims of the queue: claim_batch takes none of its jobs until
-- resume_queue. Running jobs finish; enqueue goes on. A claim whose
-- transaction began before the pause committed may still start jobs of the
-- queue; none that begins later does. Pausing a paused queue keeps its time.
CREATE OR REPLACE FUNCTION pyqueue.pause_queue(queue text) RETURNS timestamptz
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    since timestamptz;
BEGIN
    PERFORM _check_queue(pause_queue.queue);
    PERFORM _authorize(pause_queue.queue, 'work');
    INSERT INTO queues AS q (name, paused_at)
    VALUES (pause_queue.queue, clock_timestamp())
    ON CONFLICT (name) DO UPDATE
    SET paused_at = coalesce(q.paused_at, excluded.paused_at), updated_at = now()
    RETURNING q.paused_at INTO since;
    RETURN since;
END;
$$;

-- resume_queue(queue) -> boolean (true if it was paused)
-- Lets claims take the queue's jobs again, and wakes idle workers.
CREATE OR REPLACE FUNCTION pyqueue.resume_queue(queue text) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM _check_queue(resume_queue.queue);
    PERFORM _authorize(resume_queue.queue, 'work');
    UPDATE queues SET paused_at = NULL, updated_at = now()
    WHERE name = resume_queue.queue AND paused_at IS NOT NULL;
    IF FOUND THEN
        PERFORM pg_notify('pyqueue_jobs', resume_queue.queue);
        RETURN true;
    END IF;
    RETURN false;
END;
$$;
