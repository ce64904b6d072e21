-- Uniqueness modes: what enqueue does with an idempotency key the queue holds.
-- One job at a time holds a key (the unique index jobs_idempotency_idx); the
-- mode of each enqueue decides whether the holder still holds it for that
-- call. When it does, the call returns the holder's id (debounce also updates
-- it); when it does not, the holder's key is released (key_released_at) and a
-- new job takes it. The unique index, not a lock taken by convention, keeps two
-- concurrent enqueues from both adding a job, at any isolation level.
--
--   until_purged  held while the job is in pyqueue.jobs, whatever its status:
--                 until purged or dead-lettered (the default; the only mode
--                 before schema version 5)
--   pending       held while the job is pending
--   active        held while the job is pending or running
--   throttle      held for unique_period from the job's enqueue
--   debounce      held while pending; a new enqueue replaces the payload and
--                 moves the start to unique_period from now (or the run_at or
--                 delay given)

-- _check_unique_options(mode, period): mode is NULL or a uniqueness mode;
-- period is NULL or a positive interval.
CREATE OR REPLACE FUNCTION pyqueue._check_unique_options(mode text, period interval)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF mode NOT IN ('until_purged', 'pending', 'active', 'throttle', 'debounce') THEN
        RAISE EXCEPTION 'pyqueue: unknown unique_mode %', quote_literal(left(mode, 40))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A unique_mode is one of until_purged, pending, active, throttle, debounce.';
    END IF;
    PERFORM pyqueue._check_interval('unique_period', period);
END;
$$;

-- _key_holds(mode, period, status, created_at) -> boolean
-- Whether a job in this status, enqueued at created_at, still holds its key
-- for an enqueue in this mode. SQL, so that the planner inlines it.
CREATE OR REPLACE FUNCTION pyqueue._key_holds(mode text, period interval, status text,
                                              created_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT CASE mode
        WHEN 'until_purged' THEN true
        WHEN 'pending' THEN status = 'pending'
        WHEN 'debounce' THEN status = 'pending'
        WHEN 'active' THEN status IN ('pending', 'running')
        WHEN 'throttle' THEN created_at > now() - period
    END
$$;

-- _enqueue_keyed(queue, payload, run_at, delay, priority, max_attempts,
--                idempotency_key, backoff_base, backoff_max, timeout,
--                unique_mode, unique_period) -> bigint (the job id)
-- enqueue() of a job with a key, its options already checked. unique_mode and
-- unique_period NULL take the queue's (then the defaults row's); throttle and
-- debounce need a period.
CREATE OR REPLACE FUNCTION pyqueue._enqueue_keyed(
    queue           text,
    payload         jsonb,
    run_at          timestamptz,
    delay           interval,
    priority        integer,
    max_attempts    integer,
    idempotency_key text,
    backoff_base    interval,
    backoff_max     interval,
    timeout         interval,
    unique_mode     text,
    unique_period   interval
) RETURNS bigint
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    mode     text := _enqueue_keyed.unique_mode;
    period   interval := _enqueue_keyed.unique_period;
    start    timestamptz;
    job_id   bigint;
    notified text;
    holder   record;
BEGIN
    IF mode IS NULL OR (period IS NULL AND mode IN ('throttle', 'debounce')) THEN
        SELECT coalesce(mode, q.unique_mode, d.unique_mode),
               coalesce(period, q.unique_period, d.unique_period)
        INTO mode, period
        FROM pyqueue.queues d
        LEFT JOIN pyqueue.queues q ON q.name = _enqueue_keyed.queue
        WHERE d.name = '*';
    END IF;
    mode := coalesce(mode, 'until_purged');
    IF period IS NULL AND mode IN ('throttle', 'debounce') THEN
        RAISE EXCEPTION 'pyqueue: unique_mode % needs unique_period', mode
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Give unique_period, or set the queue''s with configure_queue(unique_period => ...).';
    END IF;
    start := coalesce(_enqueue_keyed.run_at, now() + _enqueue_keyed.delay,
                      CASE WHEN mode = 'debounce' THEN now() + period END, now());

    -- Each turn inserts, or returns the holder's id, or releases the holder's
    -- key; it turns again only when a concurrent call changed the holder.
    LOOP
        INSERT INTO pyqueue.jobs (queue, payload, run_at, priority, max_attempts,
                                  idempotency_key, backoff_base, backoff_max, timeout)
        SELECT _enqueue_keyed.queue, _enqueue_keyed.payload, start, _enqueue_keyed.priority,
               coalesce(_enqueue_keyed.max_attempts, q.max_attempts, d.max_attempts),
               _enqueue_keyed.idempotency_key, _enqueue_keyed.backoff_base,
               _enqueue_keyed.backoff_max, coalesce(_enqueue_keyed.timeout, q.timeout, d.timeout)
        FROM pyqueue.queues d
        LEFT JOIN pyqueue.queues q ON q.name = _enqueue_keyed.queue
        WHERE d.name = '*'
          AND pg_column_size(_enqueue_keyed.payload)
              <= coalesce(q.max_payload_bytes, d.max_payload_bytes)
        ON CONFLICT (queue, idempotency_key)
            WHERE idempotency_key IS NOT NULL AND key_released_at IS NULL
            DO NOTHING
        RETURNING id, pg_notify('pyqueue_jobs', _enqueue_keyed.queue)::text INTO job_id, notified;
        IF job_id IS NOT NULL THEN
            RETURN job_id;
        END IF;

        -- Nothing inserted: the payload was refused (this raises, naming why),
        -- or a job holds the key.
        PERFORM pyqueue._refuse_payload(_enqueue_keyed.queue, _enqueue_keyed.payload);
        SELECT j.id, j.status, j.created_at INTO holder
        FROM pyqueue.jobs j
        WHERE j.queue = _enqueue_keyed.queue AND j.idempotency_key = _enqueue_keyed.idempotency_key
          AND j.key_released_at IS NULL;
        CONTINUE WHEN NOT FOUND;  -- the holder went between the two statements
        IF mode = 'debounce' THEN
            -- Waits for a claim of the job under way; then finds it running.
            UPDATE pyqueue.jobs j
            SET payload = _enqueue_keyed.payload, run_at = start
            WHERE j.id = holder.id AND j.status = 'pending' AND j.key_released_at IS NULL
            RETURNING j.id INTO job_id;
            IF job_id IS NOT NULL THEN
                RETURN job_id;
            END IF;
        ELSIF pyqueue._key_holds(mode, period, holder.status, holder.created_at) THEN
            RETURN holder.id;
        END IF;
        -- The holder no longer holds the key for this call: release it. The
        -- condition is checked again on the row's newest version, so a holder
        -- that changed meanwhile keeps its key and the next turn sees it.
        UPDATE pyqueue.jobs j
        SET key_released_at = now()
        WHERE j.id = holder.id AND j.key_released_at IS NULL
          AND NOT pyqueue._key_holds(mode, period, j.status, j.created_at);
    END LOOP;
END;
$$;

-- _enqueue_batch_keyed(queue, payloads, run_at, delay, priority, max_attempts,
--                      idempotency_keys, backoff_base, backoff_max, timeout,
--                      unique_mode, unique_period) -> SETOF bigint
-- enqueue_batch() with keys in a mode other than until_purged: one enqueue per
-- element, in key order (two batches holding the same keys then never wait for
-- each other in a cycle), the ids returned in the order of payloads. A key
-- repeated within the batch acts as enqueues one after the other would.
CREATE OR REPLACE FUNCTION pyqueue._enqueue_batch_keyed(
    queue            text,
    payloads         jsonb[],
    run_at           timestamptz,
    delay            interval,
    priority         integer,
    max_attempts     integer,
    idempotency_keys text[],
    backoff_base     interval,
    backoff_max      interval,
    timeout          interval,
    unique_mode      text,
    unique_period    interval
) RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    ids  bigint[] := array_fill(NULL::bigint, ARRAY[cardinality(payloads)]);
    item record;
BEGIN
    FOR item IN
        SELECT p.ord, p.payload, p.key
        FROM unnest(payloads, idempotency_keys) WITH ORDINALITY AS p(payload, key, ord)
        ORDER BY p.key, p.ord
    LOOP
        IF item.key IS NULL THEN
            ids[item.ord] := pyqueue.enqueue(queue, item.payload, run_at, delay, priority,
                                             max_attempts, NULL, backoff_base, backoff_max,
                                             timeout);
        ELSE
            ids[item.ord] := pyqueue._enqueue_keyed(queue, item.payload, run_at, delay, priority,
                                                    max_attempts, item.key, backoff_base,
                                                    backoff_max, timeout, unique_mode,
                                                    unique_period);
        END IF;
    END LOOP;
    RETURN QUERY SELECT unnest(ids);
END;
$$;
