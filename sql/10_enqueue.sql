-- Enqueue: add jobs. Both functions run in the caller's transaction, so a job
-- enqueued beside a business row commits or rolls back with it. A NOTIFY on
-- channel 'pyqueue_jobs' (payload: the queue name) wakes idle workers at commit.

-- _check_job_options(queue, run_at, delay, priority, max_attempts,
--                    backoff_base, backoff_max, timeout)
-- Checks the options that enqueue and enqueue_batch share; NULL means "the
-- default" for every option but queue and priority.
CREATE OR REPLACE FUNCTION pyqueue._check_job_options(
    queue        text,
    run_at       timestamptz,
    delay        interval,
    priority     integer,
    max_attempts integer,
    backoff_base interval,
    backoff_max  interval,
    timeout      interval
) RETURNS void
LANGUAGE plpgsql IMMUTABLE
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
    PERFORM pyqueue._check_interval('timeout', timeout);
END;
$$;

-- _check_key(name, key): an idempotency key is NULL (no key) or 1 to 1000
-- bytes: the unique index cannot hold much more.
CREATE OR REPLACE FUNCTION pyqueue._check_key(name text, key text) RETURNS void
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
CREATE OR REPLACE FUNCTION pyqueue._check_payload(name text, payload jsonb, max_bytes integer)
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

-- _refuse_payload(queue, payload): called when enqueue's insert added nothing.
-- Raises, naming why, if the payload is NULL or over the queue's size limit,
-- or the defaults row '*' is missing. Returns if the payload is accepted: the
-- key was held, or the limit was raised since the insert.
CREATE OR REPLACE FUNCTION pyqueue._refuse_payload(queue text, payload jsonb) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    PERFORM pyqueue._check_payload('payload', payload,
                                   (pyqueue.queue_settings(queue)).max_payload_bytes);
    IF NOT EXISTS (SELECT 1 FROM pyqueue.queues WHERE name = '*') THEN
        RAISE EXCEPTION 'pyqueue: the defaults row ''*'' is missing from pyqueue.queues'
            USING ERRCODE = 'undefined_object';
    END IF;
END;
$$;

-- enqueue(queue, payload, run_at, delay, priority, max_attempts,
--         idempotency_key, backoff_base, backoff_max, timeout,
--         unique_mode, unique_period) -> bigint (the job id)
-- Adds one pending job, due at run_at, or after delay, or now. Higher priority
-- runs first. max_attempts counts every run, the first included (NULL: the
-- queue's). With an idempotency_key that the queue already holds, nothing is
-- added and the existing job's id is returned; this is race-free under
-- concurrent enqueues. How long a job holds its key is the unique_mode's
-- (sql/12_unique.sql; NULL: the queue's, by default until_purged: until the job
-- is purged or dead-lettered); unique_period is throttle's and debounce's period.
-- timeout bounds each run (NULL: the queue's); a run past it fails as timed out.
-- A role restricted by queue grants (sql/03_permissions.sql) needs 'enqueue'
-- on the queue, and 'read' too to give a key (42501 otherwise).
CREATE OR REPLACE FUNCTION pyqueue.enqueue(
    queue           text,
    payload         jsonb,
    run_at          timestamptz DEFAULT NULL,
    delay           interval    DEFAULT NULL,
    priority        integer     DEFAULT 0,
    max_attempts    integer     DEFAULT NULL,
    idempotency_key text        DEFAULT NULL,
    backoff_base    interval    DEFAULT NULL,
    backoff_max     interval    DEFAULT NULL,
    timeout         interval    DEFAULT NULL,
    unique_mode     text        DEFAULT NULL,
    unique_period   interval    DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job_id   bigint;
    -- The insert's RETURNING sends the NOTIFY, for the inserted row only: a
    -- statement of its own (PERFORM) costs the executor's setup once more.
    -- pg_notify returns void, which no variable can hold; this takes its text.
    notified text;
BEGIN
    PERFORM _authorize(enqueue.queue, 'enqueue');
    -- The option checks run in full only when an option is given or the queue
    -- name is not plainly valid: a one-job transaction pays for each nested
    -- call, and the everyday call (a queue and a payload) needs none of them.
    IF _is_queue_name(enqueue.queue) IS NOT TRUE OR enqueue.priority IS DISTINCT FROM 0
       OR num_nonnulls(enqueue.run_at, enqueue.delay, enqueue.max_attempts,
                       enqueue.idempotency_key, enqueue.backoff_base, enqueue.backoff_max,
                       enqueue.timeout, enqueue.unique_mode, enqueue.unique_period) > 0 THEN
        PERFORM _check_key('idempotency_key', enqueue.idempotency_key);
        PERFORM _check_unique_options(enqueue.unique_mode, enqueue.unique_period);
        PERFORM _check_job_options(enqueue.queue, enqueue.run_at, enqueue.delay,
                                   enqueue.priority, enqueue.max_attempts,
                                   enqueue.backoff_base, enqueue.backoff_max, enqueue.timeout);
    END IF;

    -- Each loop below runs once but for a race: the queue's size limit raised,
    -- or the job holding the key removed, between a statement and the next.
    IF enqueue.idempotency_key IS NULL THEN
        -- Without a key there is nothing to conflict with, so a plain insert:
        -- ON CONFLICT makes every insert speculative (a lock, and one more WAL
        -- record to confirm it), whether or not the row has a key.
        LOOP
            -- The queue's settings (its own row, else the defaults row '*') are
            -- read by the insert itself; a payload over the queue's size limit,
            -- or NULL, inserts nothing.
            INSERT INTO jobs (queue, payload, run_at, priority, max_attempts,
                              backoff_base, backoff_max, timeout)
            SELECT enqueue.queue, enqueue.payload,
                   coalesce(enqueue.run_at, now() + enqueue.delay, now()), enqueue.priority,
                   coalesce(enqueue.max_attempts, q.max_attempts, d.max_attempts),
                   enqueue.backoff_base, enqueue.backoff_max,
                   coalesce(enqueue.timeout, q.timeout, d.timeout)
            FROM queues d
            LEFT JOIN queues q ON q.name = enqueue.queue
            WHERE d.name = '*'
              AND pg_column_size(enqueue.payload) <= coalesce(q.max_payload_bytes, d.max_payload_bytes)
            RETURNING id, pg_notify('pyqueue_jobs', enqueue.queue)::text INTO job_id, notified;
            EXIT WHEN job_id IS NOT NULL;
            PERFORM _refuse_payload(enqueue.queue, enqueue.payload);
        END LOOP;
        RETURN job_id;
    END IF;

    -- A held key answers with its job's id: only for those who may read the queue.
    PERFORM _authorize(enqueue.queue, 'read');
    RETURN _enqueue_keyed(enqueue.queue, enqueue.payload, enqueue.run_at, enqueue.delay,
                          enqueue.priority, enqueue.max_attempts, enqueue.idempotency_key,
                          enqueue.backoff_base, enqueue.backoff_max, enqueue.timeout,
                          enqueue.unique_mode, enqueue.unique_period);
END;
$$;

-- enqueue_batch(queue, payloads, run_at, delay, priority, max_attempts,
--               idempotency_keys, backoff_base, backoff_max, timeout,
--               unique_mode, unique_period) -> SETOF bigint
-- Adds one job per element of payloads, all with the same options, in one
-- statement. idempotency_keys, when given, is as long as payloads (NULL
-- elements: no key). Returns the job ids in the order of payloads; a key the
-- queue already holds (or that repeats within the batch) yields the existing id;
-- unique_mode and unique_period act as in enqueue. Permissions as for enqueue.
CREATE OR REPLACE FUNCTION pyqueue.enqueue_batch(
    queue            text,
    payloads         jsonb[],
    run_at           timestamptz DEFAULT NULL,
    delay            interval    DEFAULT NULL,
    priority         integer     DEFAULT 0,
    max_attempts     integer     DEFAULT NULL,
    idempotency_keys text[]      DEFAULT NULL,
    backoff_base     interval    DEFAULT NULL,
    backoff_max      interval    DEFAULT NULL,
    timeout          interval    DEFAULT NULL,
    unique_mode      text        DEFAULT NULL,
    unique_period    interval    DEFAULT NULL
) RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    settings queues;
    ids      bigint[];
    resolved bigint[];
BEGIN
    PERFORM _authorize(enqueue_batch.queue, 'enqueue');
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
    PERFORM _check_job_options(enqueue_batch.queue, enqueue_batch.run_at, enqueue_batch.delay,
                               enqueue_batch.priority, enqueue_batch.max_attempts,
                               enqueue_batch.backoff_base, enqueue_batch.backoff_max,
                               enqueue_batch.timeout);
    PERFORM _check_unique_options(enqueue_batch.unique_mode, enqueue_batch.unique_period);
    settings := queue_settings(enqueue_batch.queue);
    -- Find the first bad payload in one pass, then let the check name it.
    PERFORM _check_payload(format('payloads[%s]', p.ord), p.payload, settings.max_payload_bytes)
    FROM unnest(payloads) WITH ORDINALITY AS p(payload, ord)
    WHERE p.payload IS NULL OR pg_column_size(p.payload) > settings.max_payload_bytes
    LIMIT 1;
    IF coalesce(cardinality(payloads), 0) = 0 THEN
        RETURN;
    END IF;

    IF idempotency_keys IS NOT NULL THEN
        -- A held key answers with its job's id: only for those who may read the queue.
        PERFORM _authorize(enqueue_batch.queue, 'read');
    END IF;
    IF idempotency_keys IS NOT NULL
       AND coalesce(enqueue_batch.unique_mode, settings.unique_mode, 'until_purged') <> 'until_purged' THEN
        RETURN QUERY SELECT _enqueue_batch_keyed(
            enqueue_batch.queue, payloads, enqueue_batch.run_at, enqueue_batch.delay,
            enqueue_batch.priority, enqueue_batch.max_attempts, idempotency_keys,
            enqueue_batch.backoff_base, enqueue_batch.backoff_max, enqueue_batch.timeout,
            enqueue_batch.unique_mode, enqueue_batch.unique_period);
        RETURN;
    END IF;

    -- Ids are drawn first so that each payload keeps its position: RETURNING
    -- gives no order.
    ids := ARRAY(SELECT nextval('jobs_id_seq') FROM generate_series(1, cardinality(payloads)));
    IF idempotency_keys IS NULL THEN
        -- No keys: a plain insert, spared the speculative insertion of ON
        -- CONFLICT (see enqueue) and the ordering by key below.
        INSERT INTO jobs (id, queue, payload, run_at, priority, max_attempts,
                          backoff_base, backoff_max, timeout)
        OVERRIDING SYSTEM VALUE
        SELECT p.id, enqueue_batch.queue, p.payload,
               coalesce(enqueue_batch.run_at, now() + enqueue_batch.delay, now()),
               enqueue_batch.priority, coalesce(enqueue_batch.max_attempts, settings.max_attempts),
               enqueue_batch.backoff_base, enqueue_batch.backoff_max,
               coalesce(enqueue_batch.timeout, settings.timeout)
        FROM unnest(ids, payloads) AS p(id, payload);
        PERFORM pg_notify('pyqueue_jobs', enqueue_batch.queue);
        RETURN QUERY SELECT unnest(ids);
        RETURN;
    END IF;

    -- Keys already held are skipped by the insert and looked up in the next
    -- statement, whose snapshot sees rows that concurrent enqueues committed
    -- while the insert waited on them.
    INSERT INTO jobs (id, queue, payload, run_at, priority, max_attempts,
                      idempotency_key, backoff_base, backoff_max, timeout)
    OVERRIDING SYSTEM VALUE
    SELECT ids[p.ord], enqueue_batch.queue, p.payload,
           coalesce(enqueue_batch.run_at, now() + enqueue_batch.delay, now()),
           enqueue_batch.priority,
           coalesce(enqueue_batch.max_attempts, settings.max_attempts), idempotency_keys[p.ord],
           enqueue_batch.backoff_base, enqueue_batch.backoff_max,
           coalesce(enqueue_batch.timeout, settings.timeout)
    FROM unnest(payloads) WITH ORDINALITY AS p(payload, ord)
    -- Keys in one order for every batch: two batches holding the same keys in
    -- different orders would otherwise each wait for the other's key (deadlock).
    ORDER BY idempotency_keys[p.ord]
    ON CONFLICT (queue, idempotency_key)
        WHERE idempotency_key IS NOT NULL AND key_released_at IS NULL
        DO NOTHING;
    PERFORM pg_notify('pyqueue_jobs', enqueue_batch.queue);

    resolved := ARRAY(
        SELECT coalesce(fresh.id, held.id)
        FROM unnest(ids, idempotency_keys) WITH ORDINALITY AS x(id, key, ord)
        LEFT JOIN jobs fresh ON fresh.id = x.id
        LEFT JOIN jobs held ON x.key IS NOT NULL
                           AND held.queue = enqueue_batch.queue
                           AND held.idempotency_key = x.key
                           AND held.key_released_at IS NULL
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
