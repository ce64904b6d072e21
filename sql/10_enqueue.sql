-- Enqueue: add jobs. Both functions run in the caller's transaction, so a job
-- enqueued beside a business row commits or rolls back with it. A NOTIFY on
-- channel 'pyqueue_jobs' (payload: the queue name) wakes idle workers at commit.

-- _job_defaults(queue, run_at, delay, priority, max_attempts, backoff_base,
--               backoff_max) -> (run_at, max_attempts, max_payload_bytes)
-- Checks the options that enqueue and enqueue_batch share and resolves the
-- start time, the attempt limit (from the queue's settings when NULL) and the
-- queue's payload size limit.
CREATE FUNCTION pyqueue._job_defaults(
    queue        text,
    run_at       timestamptz,
    delay        interval,
    priority     integer,
    max_attempts integer,
    backoff_base interval,
    backoff_max  interval,
    OUT resolved_run_at timestamptz,
    OUT resolved_max_attempts integer,
    OUT max_payload_bytes integer
)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM pyqueue._check_queue(queue);
    IF run_at IS NOT NULL AND delay IS NOT NULL THEN
        RAISE EXCEPTION 'pyqueue: give run_at or delay, not both'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF run_at IS NOT NULL AND NOT isfinite(run_at) THEN
        RAISE EXCEPTION 'pyqueue: run_at must be a finite time, got %', run_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pyqueue._check_interval('delay', delay, allow_zero => true);
    IF priority IS NULL THEN
        RAISE EXCEPTION 'pyqueue: priority must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pyqueue._check_range('priority', priority, -32768, 32767);
    PERFORM pyqueue._check_range('max_attempts', max_attempts, 1, 1000);
    PERFORM pyqueue._check_interval('backoff_base', backoff_base);
    PERFORM pyqueue._check_interval('backoff_max', backoff_max);

    -- queue_settings(), inlined: a call of that definer function costs more
    -- than this lookup on every enqueue.
    SELECT coalesce(_job_defaults.max_attempts, q.max_attempts, d.max_attempts),
           coalesce(q.max_payload_bytes, d.max_payload_bytes)
    INTO resolved_max_attempts, _job_defaults.max_payload_bytes
    FROM pyqueue.queues d
    LEFT JOIN pyqueue.queues q ON q.name = _job_defaults.queue
    WHERE d.name = '*';
    resolved_run_at := coalesce(run_at, now() + delay, now());
END;
$$;

-- _check_key(name, key): an idempotency key is NULL (no key) or 1 to 1000
-- bytes: the unique index cannot hold much more.
CREATE FUNCTION pyqueue._check_key(name text, key text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF key = '' THEN
        RAISE EXCEPTION 'pyqueue: % must not be empty (use NULL for no key)', name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF octet_length(key) > 1000 THEN
        RAISE EXCEPTION 'pyqueue: % is % bytes, over the limit of 1000', name, octet_length(key)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;

-- _check_payload(name, payload, max_bytes): a payload is not NULL and its
-- stored size is within the queue's limit.
CREATE FUNCTION pyqueue._check_payload(name text, payload jsonb, max_bytes integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF payload IS NULL THEN
        RAISE EXCEPTION 'pyqueue: % must not be NULL (use ''null''::jsonb for a JSON null)', name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_column_size(payload) > max_bytes THEN
        RAISE EXCEPTION 'pyqueue: % is % bytes, over the queue''s limit of % bytes',
            name, pg_column_size(payload), max_bytes
            USING ERRCODE = 'program_limit_exceeded',
                  HINT = 'Store large data elsewhere and enqueue a reference to it, '
                         'or raise the limit with configure_queue(max_payload_bytes => ...).';
    END IF;
END;
$$;

-- enqueue(queue, payload, run_at, delay, priority, max_attempts,
--         idempotency_key, backoff_base, backoff_max) -> bigint (the job id)
-- Adds one pending job, due at run_at, or after delay, or now. Higher priority
-- runs first. max_attempts counts every run, the first included (NULL: the
-- queue's). With an idempotency_key that the queue already holds, nothing is
-- added and the existing job's id is returned; this is race-free under
-- concurrent enqueues. A key stays taken until its job is purged or dead-lettered.
CREATE FUNCTION pyqueue.enqueue(
    queue           text,
    payload         jsonb,
    run_at          timestamptz DEFAULT NULL,
    delay           interval    DEFAULT NULL,
    priority        integer     DEFAULT 0,
    max_attempts    integer     DEFAULT NULL,
    idempotency_key text        DEFAULT NULL,
    backoff_base    interval    DEFAULT NULL,
    backoff_max     interval    DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    opts   record;
    job_id bigint;
BEGIN
    PERFORM _check_key('idempotency_key', idempotency_key);
    opts := _job_defaults(enqueue.queue, enqueue.run_at, enqueue.delay, enqueue.priority,
                          enqueue.max_attempts, enqueue.backoff_base, enqueue.backoff_max);
    PERFORM _check_payload('payload', enqueue.payload, opts.max_payload_bytes);

    -- A retry loop, because the job holding the key can vanish (purged, dead-
    -- lettered) between our failed insert and our lookup.
    LOOP
        INSERT INTO jobs (queue, payload, run_at, priority, max_attempts,
                          idempotency_key, backoff_base, backoff_max)
        VALUES (enqueue.queue, enqueue.payload, opts.resolved_run_at, enqueue.priority,
                opts.resolved_max_attempts, enqueue.idempotency_key,
                enqueue.backoff_base, enqueue.backoff_max)
        ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id INTO job_id;
        IF job_id IS NOT NULL THEN
            PERFORM pg_notify('pyqueue_jobs', enqueue.queue);
            RETURN job_id;
        END IF;

        SELECT id INTO job_id FROM jobs
        WHERE queue = enqueue.queue AND idempotency_key = enqueue.idempotency_key;
        IF job_id IS NOT NULL THEN
            RETURN job_id;
        END IF;
    END LOOP;
END;
$$;

-- enqueue_batch(queue, payloads, run_at, delay, priority, max_attempts,
--               idempotency_keys, backoff_base, backoff_max) -> SETOF bigint
-- Adds one job per element of payloads, all with the same options, in one
-- statement. idempotency_keys, when given, is as long as payloads (NULL
-- elements: no key). Returns the job ids in the order of payloads; a key the
-- queue already holds (or that repeats within the batch) yields the existing id.
CREATE FUNCTION pyqueue.enqueue_batch(
    queue            text,
    payloads         jsonb[],
    run_at           timestamptz DEFAULT NULL,
    delay            interval    DEFAULT NULL,
    priority         integer     DEFAULT 0,
    max_attempts     integer     DEFAULT NULL,
    idempotency_keys text[]      DEFAULT NULL,
    backoff_base     interval    DEFAULT NULL,
    backoff_max      interval    DEFAULT NULL
) RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    opts     record;
    ids      bigint[];
    resolved bigint[];
BEGIN
    IF payloads IS NULL THEN
        RAISE EXCEPTION 'pyqueue: payloads must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF array_ndims(payloads) > 1 THEN
        RAISE EXCEPTION 'pyqueue: payloads must be a one-dimensional array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF idempotency_keys IS NOT NULL
       AND coalesce(cardinality(idempotency_keys), 0) <> coalesce(cardinality(payloads), 0) THEN
        RAISE EXCEPTION 'pyqueue: idempotency_keys has % elements, payloads has %',
            cardinality(idempotency_keys), cardinality(payloads)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Find the first bad key in one pass, then let the check name it.
    PERFORM _check_key(format('idempotency_keys[%s]', k.ord), k.key)
    FROM unnest(idempotency_keys) WITH ORDINALITY AS k(key, ord)
    WHERE k.key = '' OR octet_length(k.key) > 1000
    LIMIT 1;
    opts := _job_defaults(enqueue_batch.queue, enqueue_batch.run_at, enqueue_batch.delay,
                          enqueue_batch.priority, enqueue_batch.max_attempts,
                          enqueue_batch.backoff_base, enqueue_batch.backoff_max);
    -- Find the first bad payload in one pass, then let the check name it.
    PERFORM _check_payload(format('payloads[%s]', p.ord), p.payload, opts.max_payload_bytes)
    FROM unnest(payloads) WITH ORDINALITY AS p(payload, ord)
    WHERE p.payload IS NULL OR pg_column_size(p.payload) > opts.max_payload_bytes
    LIMIT 1;
    IF coalesce(cardinality(payloads), 0) = 0 THEN
        RETURN;
    END IF;

    -- Ids are drawn first so that each payload keeps its position: RETURNING
    -- gives no order. Keys already held are skipped by the insert and looked up
    -- in the next statement, whose snapshot sees rows that concurrent enqueues
    -- committed while the insert waited on them.
    ids := ARRAY(SELECT nextval('jobs_id_seq') FROM generate_series(1, cardinality(payloads)));
    INSERT INTO jobs (id, queue, payload, run_at, priority, max_attempts,
                      idempotency_key, backoff_base, backoff_max)
    OVERRIDING SYSTEM VALUE
    SELECT ids[p.ord], enqueue_batch.queue, p.payload, opts.resolved_run_at, enqueue_batch.priority,
           opts.resolved_max_attempts, idempotency_keys[p.ord],
           enqueue_batch.backoff_base, enqueue_batch.backoff_max
    FROM unnest(payloads) WITH ORDINALITY AS p(payload, ord)
    -- Keys in one order for every batch: two batches holding the same keys in
    -- different orders would otherwise each wait for the other's key (deadlock).
    ORDER BY idempotency_keys[p.ord]
    ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING;
    PERFORM pg_notify('pyqueue_jobs', enqueue_batch.queue);

    IF idempotency_keys IS NULL THEN
        RETURN QUERY SELECT unnest(ids);
        RETURN;
    END IF;
    resolved := ARRAY(
        SELECT coalesce(fresh.id, held.id)
        FROM unnest(ids, idempotency_keys) WITH ORDINALITY AS x(id, key, ord)
        LEFT JOIN jobs fresh ON fresh.id = x.id
        LEFT JOIN jobs held ON x.key IS NOT NULL
                           AND held.queue = enqueue_batch.queue
                           AND held.idempotency_key = x.key
        ORDER BY x.ord
    );
    IF array_position(resolved, NULL) IS NOT NULL THEN
        -- The job holding a key vanished (purged) between the two statements.
        RAISE EXCEPTION 'pyqueue: a job holding one of the idempotency keys was removed during enqueue_batch; try again'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN QUERY SELECT unnest(resolved);
END;
$$;
