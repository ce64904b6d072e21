-- pyqueue schema version 1, generated from sql/[0-9]*.sql by `make migration`.
-- Edit sql/ and regenerate; never edit an applied migration by hand.

-- ==== sql/00_tables.sql
-- pyqueue tables and indexes.
--
-- jobs       the hot table: every job that is pending, running, completed or
--            cancelled. Built for churn: the claim reads one partial index that
--            holds only pending jobs, so finished rows never slow it down.
-- dead_jobs  the dead-letter table: jobs whose attempts ran out, moved here whole
--            (same id) in the transaction that gave up on them.
-- queues     per-queue defaults; the row named '*' holds the defaults of every
--            queue that has no row (or a NULL column) of its own.

CREATE SCHEMA pyqueue;
COMMENT ON SCHEMA pyqueue IS 'pyqueue: a durable job queue; see sql/ for the API';

CREATE TABLE pyqueue.queues (
    name         text PRIMARY KEY,
    max_attempts integer CHECK (max_attempts BETWEEN 1 AND 1000),
    backoff_base interval CHECK (backoff_base > interval '0'),
    backoff_max  interval CHECK (backoff_max > interval '0'),
    retention    interval CHECK (retention >= interval '0'),
    -- Largest payload accepted, in bytes of its stored jsonb form.
    max_payload_bytes integer CHECK (max_payload_bytes BETWEEN 1 AND 268435456),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The built-in defaults (DESIGN.md): 3 attempts in all, backoff from 1 s up to
-- 1 h, finished jobs kept for 7 days, payloads up to 1 MiB. configure_queue('*',
-- ...) changes them.
INSERT INTO pyqueue.queues (name, max_attempts, backoff_base, backoff_max, retention,
                            max_payload_bytes)
VALUES ('*', 3, interval '1 second', interval '1 hour', interval '7 days', 1048576);

-- A job's status, as a domain rather than a CHECK on jobs: PostgreSQL reads
-- and plans a table's CHECK constraints again for every statement that writes
-- the table (this one cost a single-row insert 8 µs of CPU here), while a
-- domain's check is planned once per session. Readers see plain text.
CREATE DOMAIN pyqueue.job_status AS text
    CHECK (VALUE IN ('pending', 'running', 'completed', 'cancelled'));

CREATE TABLE pyqueue.jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            text        NOT NULL,
    status           pyqueue.job_status NOT NULL DEFAULT 'pending',
    priority         integer     NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    -- attempt counts claims: a job runs for the n-th time with attempt = n.
    attempt          integer     NOT NULL DEFAULT 0,
    max_attempts     integer     NOT NULL,
    payload          jsonb       NOT NULL,
    -- Per-job backoff; NULL takes the queue's.
    backoff_base     interval,
    backoff_max      interval,
    idempotency_key  text,
    -- The fencing value of the current claim: only its holder may finish the job.
    lease_token      uuid,
    locked_until     timestamptz,
    worker           text,
    progress         smallint,
    progress_message text,
    result           jsonb,
    error            text,
    traceback        text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    failed_at        timestamptz,
    finished_at      timestamptz,
    CHECK (attempt BETWEEN 0 AND max_attempts),
    CHECK ((status = 'running') = (lease_token IS NOT NULL))
) WITH (
    -- Room on each page for the new versions of updated rows, and a vacuum that
    -- keeps up with a table whose rows change state several times a minute.
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- The claim: due pending jobs of one queue, highest priority then oldest first.
-- Only pending rows are in it, so a million finished jobs cost the claim nothing.
-- Priority ascending, though the claim wants the highest first: the claim
-- finds a queue's highest priority by scanning backwards from the newest
-- entries, which are live. Claimed jobs leave dead entries at the oldest end
-- of each priority until vacuum removes them; a probe from that end would walk
-- them all, as the due-job scan that follows it already must.
CREATE INDEX jobs_claim_idx ON pyqueue.jobs (queue, priority, run_at, id)
    WHERE status = 'pending';

-- Lease recovery: running jobs by lease end.
CREATE INDEX jobs_lease_idx ON pyqueue.jobs (locked_until)
    WHERE status = 'running';

-- One job per idempotency key and queue, enforced by the database so that
-- concurrent enqueues cannot both insert.
CREATE UNIQUE INDEX jobs_idempotency_idx ON pyqueue.jobs (queue, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Purge and the per-minute throughput view read finished jobs by time.
CREATE INDEX jobs_finished_idx ON pyqueue.jobs (finished_at)
    WHERE status IN ('completed', 'cancelled');

CREATE TABLE pyqueue.dead_jobs (
    id               bigint PRIMARY KEY,
    queue            text        NOT NULL,
    priority         integer     NOT NULL,
    attempt          integer     NOT NULL,
    max_attempts     integer     NOT NULL,
    payload          jsonb       NOT NULL,
    backoff_base     interval,
    backoff_max      interval,
    idempotency_key  text,
    worker           text,
    progress         smallint,
    progress_message text,
    error            text,
    traceback        text,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    failed_at        timestamptz,
    dead_at          timestamptz NOT NULL DEFAULT now(),
    -- Set when retry_dead replayed this job as a new one.
    retried_as       bigint,
    retried_at       timestamptz
);

CREATE INDEX dead_jobs_dead_at_idx ON pyqueue.dead_jobs (dead_at);

-- ==== sql/01_checks.sql
-- Argument checks shared by the public functions. Each raises SQLSTATE 22023
-- (invalid_parameter_value) with a message that names the argument, before
-- anything is written.
--
-- Internal helpers (names starting with _) carry no SET search_path, unlike
-- the public functions: they run only inside those SECURITY DEFINER functions
-- (nobody else may execute them) and name schema objects in full, while a SET
-- clause on each nested call was a third of enqueue's cost in the database.

-- _is_queue_name(queue) -> boolean (NULL for NULL): a queue name is 1 to 100
-- characters, letters, digits and . _ - :, starting with a letter or digit.
-- Names are identifiers people type in psql and shells, so quotes, spaces and
-- control characters are refused. SQL, so that the planner inlines it. The
-- length is checked apart: with a bounded repeat ({0,99}) the regex took ten
-- times as long (3.5 µs a name against 0.35, measured here).
CREATE FUNCTION pyqueue._is_queue_name(queue text) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT queue ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]*$' AND length(queue) <= 100
$$;

-- _check_queue(queue): raise unless queue is a queue name.
CREATE FUNCTION pyqueue._check_queue(queue text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF pyqueue._is_queue_name(queue) IS NOT TRUE THEN
        RAISE EXCEPTION 'pyqueue: invalid queue name %', coalesce(quote_literal(left(queue, 120)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A queue name has 1 to 100 characters: letters, digits and . _ - :, '
                         'starting with a letter or digit.';
    END IF;
END;
$$;

-- _check_range(name, value, low, high): raise unless low <= value <= high.
-- NULL passes: callers check NULL where NULL is not allowed.
CREATE FUNCTION pyqueue._check_range(name text, value numeric, low numeric, high numeric)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF value < low OR value > high THEN
        RAISE EXCEPTION 'pyqueue: % must be between % and %, got %', name, low, high, value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;

-- _check_interval(name, value, allow_zero): a duration is finite, not negative
-- (not zero unless allowed) and at most 10 years.
CREATE FUNCTION pyqueue._check_interval(name text, value interval, allow_zero boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF value < interval '0' OR (value = interval '0' AND NOT allow_zero) THEN
        RAISE EXCEPTION 'pyqueue: % must be %, got %', name,
            CASE WHEN allow_zero THEN 'zero or positive' ELSE 'positive' END, value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF value > interval '3650 days' THEN
        RAISE EXCEPTION 'pyqueue: % must be at most 10 years, got %', name, value
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;

-- _job_not_found(job_id): raise SQLSTATE P0002 (no_data_found) naming the id.
CREATE FUNCTION pyqueue._job_not_found(job_id bigint) RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RAISE EXCEPTION 'pyqueue: no job with id %', coalesce(job_id::text, 'NULL')
        USING ERRCODE = 'no_data_found';
END;
$$;

-- _require_job(job_id): raise unless the id names a job, live or dead. Called on
-- the slow path of a function that changed nothing, to tell "unknown job" from
-- "job not in a state for this".
CREATE FUNCTION pyqueue._require_job(job_id bigint) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pyqueue.jobs WHERE id = job_id)
       AND NOT EXISTS (SELECT 1 FROM pyqueue.dead_jobs WHERE id = job_id) THEN
        PERFORM pyqueue._job_not_found(job_id);
    END IF;
END;
$$;

-- _check_pairs(job_ids, lease_tokens): the two arrays of a batch call pair up.
CREATE FUNCTION pyqueue._check_pairs(job_ids bigint[], lease_tokens uuid[]) RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF job_ids IS NULL OR lease_tokens IS NULL THEN
        RAISE EXCEPTION 'pyqueue: job_ids and lease_tokens must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(job_ids) <> cardinality(lease_tokens) THEN
        RAISE EXCEPTION 'pyqueue: job_ids has % elements, lease_tokens has %',
            cardinality(job_ids), cardinality(lease_tokens)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;

-- ==== sql/02_queues.sql
-- Per-queue settings and the backoff schedule.

-- queue_settings(queue) -> pyqueue.queues
-- The effective settings of a queue: its own row where a column is set, the
-- defaults row '*' otherwise. Works for queues that have no row at all.
-- PL/pgSQL rather than SQL because every enqueue_batch calls it: a SQL function
-- with a SET clause is parsed and planned again on each call (0.2 ms), PL/pgSQL
-- keeps its plan for the session.
CREATE FUNCTION pyqueue.queue_settings(queue text) RETURNS pyqueue.queues
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
           coalesce(q.updated_at, d.updated_at)
    INTO settings
    FROM queues d
    LEFT JOIN queues q ON q.name = queue_settings.queue
    WHERE d.name = '*';
    RETURN settings;
END;
$$;

-- configure_queue(queue, max_attempts, backoff_base, backoff_max, retention,
--                 max_payload_bytes) -> pyqueue.queues (the effective settings afterwards)
-- Sets the defaults of one queue; '*' sets those of every queue without its own.
-- A NULL argument leaves that setting as it is. Jobs already enqueued keep the
-- max_attempts they were given.
CREATE FUNCTION pyqueue.configure_queue(
    queue        text,
    max_attempts integer  DEFAULT NULL,
    backoff_base interval DEFAULT NULL,
    backoff_max  interval DEFAULT NULL,
    retention    interval DEFAULT NULL,
    max_payload_bytes integer DEFAULT NULL
) RETURNS pyqueue.queues
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF queue IS DISTINCT FROM '*' THEN
        PERFORM _check_queue(queue);
    END IF;
    PERFORM _check_range('max_attempts', configure_queue.max_attempts, 1, 1000);
    PERFORM _check_interval('backoff_base', configure_queue.backoff_base);
    PERFORM _check_interval('backoff_max', configure_queue.backoff_max);
    PERFORM _check_interval('retention', configure_queue.retention, allow_zero => true);
    PERFORM _check_range('max_payload_bytes', configure_queue.max_payload_bytes, 1, 268435456);

    INSERT INTO queues AS q (name, max_attempts, backoff_base, backoff_max, retention,
                             max_payload_bytes)
    VALUES (configure_queue.queue, configure_queue.max_attempts, configure_queue.backoff_base,
            configure_queue.backoff_max, configure_queue.retention,
            configure_queue.max_payload_bytes)
    ON CONFLICT (name) DO UPDATE
    SET max_attempts = coalesce(excluded.max_attempts, q.max_attempts),
        backoff_base = coalesce(excluded.backoff_base, q.backoff_base),
        backoff_max  = coalesce(excluded.backoff_max, q.backoff_max),
        retention    = coalesce(excluded.retention, q.retention),
        max_payload_bytes = coalesce(excluded.max_payload_bytes, q.max_payload_bytes),
        updated_at   = now();

    RETURN queue_settings(configure_queue.queue);
END;
$$;

-- backoff_delay(attempt, base, cap, jitter) -> interval
-- The wait before the retry that follows failed attempt number `attempt` (1 for
-- the first run). The ceiling grows as base * 2^(attempt-1) up to `cap`; the
-- delay is drawn in [ceiling/2, ceiling] ("equal jitter") from jitter in [0, 1].
-- Because each ceiling is twice the one before until the cap, the delays never
-- shrink from one attempt to the next, whatever the jitter.
CREATE FUNCTION pyqueue.backoff_delay(
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

-- ==== sql/10_enqueue.sql
-- Enqueue: add jobs. Both functions run in the caller's transaction, so a job
-- enqueued beside a business row commits or rolls back with it. A NOTIFY on
-- channel 'pyqueue_jobs' (payload: the queue name) wakes idle workers at commit.

-- _check_job_options(queue, run_at, delay, priority, max_attempts,
--                    backoff_base, backoff_max)
-- Checks the options that enqueue and enqueue_batch share; NULL means "the
-- default" for every option but queue and priority.
CREATE FUNCTION pyqueue._check_job_options(
    queue        text,
    run_at       timestamptz,
    delay        interval,
    priority     integer,
    max_attempts integer,
    backoff_base interval,
    backoff_max  interval
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

-- _refuse_payload(queue, payload): called when enqueue's insert added nothing.
-- Raises, naming why, if the payload is NULL or over the queue's size limit,
-- or the defaults row '*' is missing. Returns if the payload is accepted: the
-- key was held, or the limit was raised since the insert.
CREATE FUNCTION pyqueue._refuse_payload(queue text, payload jsonb) RETURNS void
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
    job_id   bigint;
    -- The insert's RETURNING sends the NOTIFY, for the inserted row only: a
    -- statement of its own (PERFORM) costs the executor's setup once more.
    -- pg_notify returns void, which no variable can hold; this takes its text.
    notified text;
BEGIN
    -- The option checks run in full only when an option is given or the queue
    -- name is not plainly valid: a one-job transaction pays for each nested
    -- call, and the everyday call (a queue and a payload) needs none of them.
    IF _is_queue_name(enqueue.queue) IS NOT TRUE OR enqueue.priority IS DISTINCT FROM 0
       OR num_nonnulls(enqueue.run_at, enqueue.delay, enqueue.max_attempts,
                       enqueue.idempotency_key, enqueue.backoff_base, enqueue.backoff_max) > 0 THEN
        PERFORM _check_key('idempotency_key', enqueue.idempotency_key);
        PERFORM _check_job_options(enqueue.queue, enqueue.run_at, enqueue.delay,
                                   enqueue.priority, enqueue.max_attempts,
                                   enqueue.backoff_base, enqueue.backoff_max);
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
                              backoff_base, backoff_max)
            SELECT enqueue.queue, enqueue.payload,
                   coalesce(enqueue.run_at, now() + enqueue.delay, now()), enqueue.priority,
                   coalesce(enqueue.max_attempts, q.max_attempts, d.max_attempts),
                   enqueue.backoff_base, enqueue.backoff_max
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

    LOOP
        -- The same insert, skipping a key that the queue already holds.
        INSERT INTO jobs (queue, payload, run_at, priority, max_attempts,
                          idempotency_key, backoff_base, backoff_max)
        SELECT enqueue.queue, enqueue.payload,
               coalesce(enqueue.run_at, now() + enqueue.delay, now()), enqueue.priority,
               coalesce(enqueue.max_attempts, q.max_attempts, d.max_attempts),
               enqueue.idempotency_key, enqueue.backoff_base, enqueue.backoff_max
        FROM queues d
        LEFT JOIN queues q ON q.name = enqueue.queue
        WHERE d.name = '*'
          AND pg_column_size(enqueue.payload) <= coalesce(q.max_payload_bytes, d.max_payload_bytes)
        ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING id, pg_notify('pyqueue_jobs', enqueue.queue)::text INTO job_id, notified;
        IF job_id IS NOT NULL THEN
            RETURN job_id;
        END IF;

        -- Nothing inserted: the payload was refused (this raises, naming why),
        -- or the key is held by a job whose id we return.
        PERFORM _refuse_payload(enqueue.queue, enqueue.payload);
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
    settings queues;
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
    PERFORM _check_job_options(enqueue_batch.queue, enqueue_batch.run_at, enqueue_batch.delay,
                               enqueue_batch.priority, enqueue_batch.max_attempts,
                               enqueue_batch.backoff_base, enqueue_batch.backoff_max);
    settings := queue_settings(enqueue_batch.queue);
    -- Find the first bad payload in one pass, then let the check name it.
    PERFORM _check_payload(format('payloads[%s]', p.ord), p.payload, settings.max_payload_bytes)
    FROM unnest(payloads) WITH ORDINALITY AS p(payload, ord)
    WHERE p.payload IS NULL OR pg_column_size(p.payload) > settings.max_payload_bytes
    LIMIT 1;
    IF coalesce(cardinality(payloads), 0) = 0 THEN
        RETURN;
    END IF;

    -- Ids are drawn first so that each payload keeps its position: RETURNING
    -- gives no order.
    ids := ARRAY(SELECT nextval('jobs_id_seq') FROM generate_series(1, cardinality(payloads)));
    IF idempotency_keys IS NULL THEN
        -- No keys: a plain insert, spared the speculative insertion of ON
        -- CONFLICT (see enqueue) and the ordering by key below.
        INSERT INTO jobs (id, queue, payload, run_at, priority, max_attempts,
                          backoff_base, backoff_max)
        OVERRIDING SYSTEM VALUE
        SELECT p.id, enqueue_batch.queue, p.payload,
               coalesce(enqueue_batch.run_at, now() + enqueue_batch.delay, now()),
               enqueue_batch.priority, coalesce(enqueue_batch.max_attempts, settings.max_attempts),
               enqueue_batch.backoff_base, enqueue_batch.backoff_max
        FROM unnest(ids, payloads) AS p(id, payload);
        PERFORM pg_notify('pyqueue_jobs', enqueue_batch.queue);
        RETURN QUERY SELECT unnest(ids);
        RETURN;
    END IF;

    -- Keys already held are skipped by the insert and looked up in the next
    -- statement, whose snapshot sees rows that concurrent enqueues committed
    -- while the insert waited on them.
    INSERT INTO jobs (id, queue, payload, run_at, priority, max_attempts,
                      idempotency_key, backoff_base, backoff_max)
    OVERRIDING SYSTEM VALUE
    SELECT ids[p.ord], enqueue_batch.queue, p.payload,
           coalesce(enqueue_batch.run_at, now() + enqueue_batch.delay, now()),
           enqueue_batch.priority,
           coalesce(enqueue_batch.max_attempts, settings.max_attempts), idempotency_keys[p.ord],
           enqueue_batch.backoff_base, enqueue_batch.backoff_max
    FROM unnest(payloads) WITH ORDINALITY AS p(payload, ord)
    -- Keys in one order for every batch: two batches holding the same keys in
    -- different orders would otherwise each wait for the other's key (deadlock).
    ORDER BY idempotency_keys[p.ord]
    ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING;
    PERFORM pg_notify('pyqueue_jobs', enqueue_batch.queue);

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

-- ==== sql/20_claim.sql
-- Claim: lease due jobs to a worker, and hand back jobs it never started.

-- What a worker gets for each job it claims. lease_token is the fencing value:
-- complete, fail, heartbeat, report_progress and release act only when given
-- the token of the job's current claim. The jobs of one claim share a token;
-- every claim draws a new one.
CREATE TYPE pyqueue.claimed_job AS (
    id           bigint,
    queue        text,
    payload      jsonb,
    attempt      integer,
    max_attempts integer,
    lease_token  uuid,
    locked_until timestamptz
);

-- claim_batch(queues, worker, batch_size, lease) -> SETOF pyqueue.claimed_job
-- Leases up to batch_size due pending jobs of the given queues to `worker` (a
-- name for people to read) for `lease`: highest priority first, then earliest
-- run_at, then lowest id, and returns them in that order. Rows locked by
-- concurrent claims are skipped, never waited for, so two claims never return
-- the same job. Each claimed job is running, its attempt counted.
--
-- Recovery of expired leases is part of the claim: the first claimer to take a
-- transaction-level advisory lock runs recover_expired() before claiming, and
-- claimers that find it taken skip it. So a dead worker's jobs are pending again
-- within their lease plus one claim interval, with no janitor to deploy.
CREATE FUNCTION pyqueue.claim_batch(
    queues     text[],
    worker     text,
    batch_size integer  DEFAULT 1,
    lease      interval DEFAULT interval '30 seconds'
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
-- within seconds (seen in the soak benchmark: 50 ms a claim at 60,000 jobs).
SET plan_cache_mode = force_generic_plan
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
#variable_conflict use_column
DECLARE
    picked      bigint[];
    -- One fencing token per claim, shared by the jobs it leases: with a job's
    -- id it names this claim of that job, as a token per job would. One random
    -- draw a claim, not one a job: gen_random_uuid() cost 1 to 2 µs a job of
    -- the claim's 13 to 17 (measured here).
    claim_token uuid := gen_random_uuid();
BEGIN
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

    IF pg_try_advisory_xact_lock(hashtext('pyqueue.recover_expired')) THEN
        PERFORM recover_expired();
    END IF;

    -- The jobs to claim, locked; then the update, by primary key. Two
    -- statements, not one: as one, the generic plan joins the picked jobs to
    -- the table by hash, reading all of it.
    picked := ARRAY(
        -- Per queue, merged and cut to batch_size: a single ORDER BY over
        -- queue = ANY(...) would sort every due job of all the queues.
        SELECT c.id
        FROM unnest(queues) AS q(name)
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
                LIMIT claim_batch.batch_size
                FOR UPDATE SKIP LOCKED
            ) AS due
            LIMIT claim_batch.batch_size
        ) AS c
        ORDER BY c.priority DESC, c.run_at, c.id
        LIMIT claim_batch.batch_size
    );

    RETURN QUERY
    WITH claimed AS (
        UPDATE jobs j
        SET status       = 'running',
            attempt      = j.attempt + 1,
            lease_token  = claim_token,
            locked_until = now() + claim_batch.lease,
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
END;
$$;

-- release(job_ids, lease_tokens) -> SETOF bigint (the ids handed back)
-- Hands back claimed jobs the worker never started (on shutdown): they are
-- pending again, in their old place in line (run_at unchanged), and the claim
-- is not counted as an attempt. Pairs whose
-- token no longer holds the job are ignored.
CREATE FUNCTION pyqueue.release(job_ids bigint[], lease_tokens uuid[]) RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
BEGIN
    PERFORM _check_pairs(job_ids, lease_tokens);
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

-- ==== sql/30_complete.sql
-- Complete: a worker reports success. Finished jobs are announced on channel
-- 'pyqueue_finished' (payload: job ids, comma-separated) so that waiters wake.

-- _notify_finished(job_ids): one NOTIFY per chunk of ids, each well under the
-- 8000-byte payload limit. PL/pgSQL, not SQL, so that its plan is kept: a SQL
-- function with a SET clause is planned again on every call.
CREATE FUNCTION pyqueue._notify_finished(job_ids bigint[]) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('pyqueue_finished', string_agg(id::text, ','))
    FROM unnest(job_ids) WITH ORDINALITY AS f(id, ord)
    GROUP BY (ord - 1) / 400;
END;
$$;

-- complete(job_id, lease_token, result) -> boolean
-- Marks a running job completed and stores the handler's JSON result. Returns
-- false, changing nothing, when the caller no longer holds the job (its lease
-- was recovered and the job claimed again, or it was cancelled). Raises when
-- no job has that id.
CREATE FUNCTION pyqueue.complete(job_id bigint, lease_token uuid, result jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    UPDATE jobs
    SET status       = 'completed',
        result       = complete.result,
        finished_at  = now(),
        lease_token  = NULL,
        locked_until = NULL
    WHERE id = job_id AND status = 'running' AND lease_token = complete.lease_token;
    IF FOUND THEN
        PERFORM _notify_finished(ARRAY[job_id]);
        RETURN true;
    END IF;
    PERFORM _require_job(job_id);
    RETURN false;
END;
$$;

-- complete_batch(job_ids, lease_tokens, results) -> SETOF bigint
-- complete() for many jobs in one statement. results, when given, pairs with
-- job_ids (NULL: no results). Returns the ids that were completed; the others
-- were no longer held by the caller (or do not exist).
CREATE FUNCTION pyqueue.complete_batch(
    job_ids      bigint[],
    lease_tokens uuid[],
    results      jsonb[] DEFAULT NULL
) RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
-- One primary-key lookup per pair, whatever the statistics say: a plan cached
-- while the table was nearly empty would otherwise hash or merge-join the whole
-- table on every call until autovacuum next analyzes it (see claim_batch).
SET enable_seqscan = off
SET enable_bitmapscan = off
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
DECLARE
    done bigint[];
BEGIN
    PERFORM _check_pairs(job_ids, lease_tokens);
    IF results IS NOT NULL AND cardinality(results) <> cardinality(job_ids) THEN
        RAISE EXCEPTION 'pyqueue: results has % elements, job_ids has %',
            cardinality(results), cardinality(job_ids)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- No "status = 'running'" here: a matching lease token already means
    -- running (the table's CHECK), and that condition would let the planner
    -- drive the join from jobs_lease_idx, rescanning the arrays once per
    -- running job (quadratic in the batch). Without it, each pair is one
    -- primary-key lookup.
    WITH finished AS (
        UPDATE jobs j
        SET status       = 'completed',
            result       = results[d.ord],
            finished_at  = now(),
            lease_token  = NULL,
            locked_until = NULL
        FROM unnest(job_ids, lease_tokens) WITH ORDINALITY AS d(id, token, ord)
        WHERE j.id = d.id AND j.lease_token = d.token
        RETURNING j.id
    )
    SELECT coalesce(array_agg(id), '{}') INTO done FROM finished;
    PERFORM _notify_finished(done);
    RETURN QUERY SELECT unnest(done);
END;
$$;

-- ==== sql/40_fail.sql
-- Fail: a worker reports an error; the job is retried later or dead-lettered.

-- _bury(job_ids, error, traceback) -> SETOF bigint (the ids moved)
-- Moves jobs from jobs to dead_jobs, whole and under the same id, in the
-- caller's transaction: a job is in exactly one of the two tables. error and
-- traceback become the dead job's last ones.
CREATE FUNCTION pyqueue._bury(job_ids bigint[], error text, traceback text DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
#variable_conflict use_variable
DECLARE
    buried bigint[];
BEGIN
    WITH gone AS (
        DELETE FROM pyqueue.jobs j WHERE j.id = ANY (job_ids) RETURNING j.*
    ), moved AS (
        INSERT INTO pyqueue.dead_jobs (id, queue, priority, attempt, max_attempts, payload,
                               backoff_base, backoff_max, idempotency_key, worker,
                               progress, progress_message, error, traceback,
                               created_at, started_at, failed_at)
        SELECT g.id, g.queue, g.priority, g.attempt, g.max_attempts, g.payload,
               g.backoff_base, g.backoff_max, g.idempotency_key, g.worker,
               g.progress, g.progress_message, error,
               traceback, g.created_at, g.started_at, now()
        FROM gone g
        RETURNING id
    )
    SELECT coalesce(array_agg(m.id), '{}') INTO buried FROM moved m;
    PERFORM pyqueue._notify_finished(buried);
    RETURN QUERY SELECT unnest(buried);
END;
$$;

-- fail(job_id, lease_token, error, traceback) -> text
-- Records a failed run. With attempts left the job is pending again, due after
-- backoff_delay(attempt, ...) (the job's backoff, else its queue's), with the
-- error kept; returns 'pending'. With none left it moves to the dead-letter
-- table in this transaction; returns 'dead'. Returns 'lost', changing nothing,
-- when the caller no longer holds the job. Raises when no job has that id.
CREATE FUNCTION pyqueue.fail(
    job_id      bigint,
    lease_token uuid,
    error       text,
    traceback   text DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job      jobs%ROWTYPE;
    settings queues%ROWTYPE;
    message  text := left(coalesce(fail.error, '(no error message)'), 10000);
    trace    text := left(fail.traceback, 100000);
BEGIN
    SELECT * INTO job FROM jobs
    WHERE id = job_id AND status = 'running' AND lease_token = fail.lease_token
    FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM _require_job(job_id);
        RETURN 'lost';
    END IF;

    IF job.attempt >= job.max_attempts THEN
        PERFORM _bury(ARRAY[job_id], message, trace);
        RETURN 'dead';
    END IF;

    settings := queue_settings(job.queue);
    UPDATE jobs
    SET status       = 'pending',
        run_at       = now() + backoff_delay(job.attempt,
                                             coalesce(job.backoff_base, settings.backoff_base),
                                             coalesce(job.backoff_max, settings.backoff_max)),
        error        = message,
        traceback    = trace,
        failed_at    = now(),
        lease_token  = NULL,
        locked_until = NULL
    WHERE id = job_id;
    RETURN 'pending';
END;
$$;

-- ==== sql/50_leases.sql
-- Leases: heartbeat, progress and recovery of jobs whose worker went away.

-- heartbeat(job_ids, lease_tokens, lease) -> SETOF bigint
-- Extends the leases the caller holds to now() + lease. Returns the ids still
-- held; a job missing from the answer was lost (recovered, claimed again or
-- cancelled) and its handler's outcome will not be recorded.
CREATE FUNCTION pyqueue.heartbeat(
    job_ids      bigint[],
    lease_tokens uuid[],
    lease        interval DEFAULT interval '30 seconds'
) RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
BEGIN
    PERFORM _check_pairs(job_ids, lease_tokens);
    IF lease IS NULL THEN
        RAISE EXCEPTION 'pyqueue: lease must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM _check_interval('lease', lease);
    RETURN QUERY
    UPDATE jobs j
    SET locked_until = now() + lease
    FROM unnest(job_ids, lease_tokens) AS h(id, token)
    -- A matching token means running (the table's CHECK); see complete_batch
    -- for why status is not tested here.
    WHERE j.id = h.id AND j.lease_token = h.token
    RETURNING j.id;
END;
$$;

-- report_progress(job_id, lease_token, progress, message) -> boolean
-- Best-effort progress of a running job: progress is clamped to 0..100 (NULL
-- keeps the last value), message cut to 1000 characters. Returns false when the
-- caller no longer holds the job. Never raises for a lost or unknown job: a
-- progress report must not fail a handler.
CREATE FUNCTION pyqueue.report_progress(
    job_id      bigint,
    lease_token uuid,
    progress    integer,
    message     text DEFAULT NULL
) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    UPDATE jobs
    -- CASE, not coalesce(greatest(0, least(100, p)), ...): least() and greatest()
    -- skip NULLs, so a NULL progress would be stored as 100.
    SET progress         = CASE WHEN report_progress.progress IS NULL THEN progress
                                ELSE greatest(0, least(100, report_progress.progress)) END,
        progress_message = coalesce(left(message, 1000), progress_message)
    WHERE id = job_id AND status = 'running' AND lease_token = report_progress.lease_token;
    RETURN FOUND;
END;
$$;

-- recover_expired(max_jobs) -> integer (the number of jobs recovered)
-- Running jobs whose lease ran out (their worker died or stalled without a
-- heartbeat) go back to pending with the expired run counted as an attempt.
-- They keep their run_at, which is past, so they are claimed again at once and
-- ahead of the jobs of their priority that came due after them. Those with no
-- attempts left are dead-lettered. At most max_jobs per
-- call, oldest lease first. claim_batch calls this (see 20_claim.sql); calling
-- it by hand is harmless.
CREATE FUNCTION pyqueue.recover_expired(max_jobs integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
-- The lease index, whatever the statistics say: claim_batch calls this on every
-- claim, and a plan cached while the table was nearly empty would otherwise
-- read and sort the whole table each time until autovacuum next analyzes it.
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
    retry_ids bigint[];
    dead_ids  bigint[];
BEGIN
    PERFORM _check_range('max_jobs', max_jobs, 1, 100000);
    SELECT coalesce(array_agg(id) FILTER (WHERE attempt < max_attempts), '{}'),
           coalesce(array_agg(id) FILTER (WHERE attempt >= max_attempts), '{}')
    INTO retry_ids, dead_ids
    FROM (
        SELECT id, attempt, max_attempts FROM jobs
        WHERE status = 'running' AND locked_until < now()
        ORDER BY locked_until
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED
    ) AS expired;
    -- The usual case, on every claim: nothing expired, nothing more to do.
    IF cardinality(retry_ids) + cardinality(dead_ids) = 0 THEN
        RETURN 0;
    END IF;

    UPDATE jobs
    SET status       = 'pending',
        error        = format('lease expired: worker %s stopped without finishing attempt %s',
                              worker, attempt),
        traceback    = NULL,
        failed_at    = now(),
        lease_token  = NULL,
        locked_until = NULL
    WHERE id = ANY (retry_ids);
    PERFORM pg_notify('pyqueue_jobs', queue)
    FROM (SELECT DISTINCT queue FROM jobs WHERE id = ANY (retry_ids)) AS q;

    PERFORM _bury(dead_ids, 'lease expired on the last attempt: the worker stopped without finishing', NULL);
    RETURN cardinality(retry_ids) + cardinality(dead_ids);
END;
$$;

-- ==== sql/60_admin.sql
-- Operator actions: cancel, replay a dead letter, purge finished jobs.

-- cancel(job_id) -> boolean
-- Cancels a pending or running job. A running job's worker loses it: its later
-- complete or fail reports it lost. Returns false, changing nothing, when the
-- job had already finished (completed, cancelled or dead). Raises when no job
-- has that id.
CREATE FUNCTION pyqueue.cancel(job_id bigint) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
BEGIN
    UPDATE jobs
    SET status       = 'cancelled',
        finished_at  = now(),
        lease_token  = NULL,
        locked_until = NULL
    WHERE id = job_id AND status IN ('pending', 'running');
    IF FOUND THEN
        PERFORM _notify_finished(ARRAY[job_id]);
        RETURN true;
    END IF;
    PERFORM _require_job(job_id);
    RETURN false;
END;
$$;

-- retry_dead(job_id) -> bigint (the new job's id)
-- Replays a dead-lettered job as a new pending job, due now, with the same
-- queue, payload, priority, attempt limit and backoff, in one transaction. The
-- dead letter stays, marked with the new id; replaying it again returns that
-- same id instead of a second job. The idempotency key is not carried over: it
-- was released when the job died and may have been taken since. Raises when no
-- dead-lettered job has that id.
CREATE FUNCTION pyqueue.retry_dead(job_id bigint) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
DECLARE
    dead   dead_jobs%ROWTYPE;
    new_id bigint;
BEGIN
    SELECT * INTO dead FROM dead_jobs WHERE id = job_id FOR UPDATE;
    IF NOT FOUND THEN
        IF EXISTS (SELECT 1 FROM jobs WHERE id = job_id) THEN
            RAISE EXCEPTION 'pyqueue: job % is not dead-lettered (status %)', job_id,
                (SELECT status FROM jobs WHERE id = job_id)
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        PERFORM _job_not_found(job_id);
    END IF;
    IF dead.retried_as IS NOT NULL THEN
        RETURN dead.retried_as;
    END IF;

    INSERT INTO jobs (queue, payload, priority, max_attempts, backoff_base, backoff_max)
    VALUES (dead.queue, dead.payload, dead.priority, dead.max_attempts,
            dead.backoff_base, dead.backoff_max)
    RETURNING id INTO new_id;
    UPDATE dead_jobs SET retried_as = new_id, retried_at = now() WHERE id = job_id;
    PERFORM pg_notify('pyqueue_jobs', dead.queue);
    RETURN new_id;
END;
$$;

-- purge(older_than, queue) -> bigint (the number of rows deleted)
-- Deletes completed and cancelled jobs that finished more than older_than ago
-- (NULL: each queue's retention), and dead letters already replayed as long
-- ago. Dead letters never replayed are kept until an operator acts. queue NULL
-- purges every queue.
CREATE FUNCTION pyqueue.purge(older_than interval DEFAULT NULL, queue text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    jobs_deleted bigint;
    dead_deleted bigint;
BEGIN
    PERFORM _check_interval('older_than', older_than, allow_zero => true);
    IF queue IS NOT NULL THEN
        PERFORM _check_queue(queue);
    END IF;

    DELETE FROM jobs j
    USING queues d
    WHERE d.name = '*'
      AND j.status IN ('completed', 'cancelled')
      AND (queue IS NULL OR j.queue = queue)
      AND j.finished_at < now() - coalesce(
              older_than,
              (SELECT own.retention FROM queues own WHERE own.name = j.queue),
              d.retention);
    GET DIAGNOSTICS jobs_deleted = ROW_COUNT;

    DELETE FROM dead_jobs dj
    USING queues d
    WHERE d.name = '*'
      AND dj.retried_as IS NOT NULL
      AND (queue IS NULL OR dj.queue = queue)
      AND dj.retried_at < now() - coalesce(
              older_than,
              (SELECT own.retention FROM queues own WHERE own.name = dj.queue),
              d.retention);
    GET DIAGNOSTICS dead_deleted = ROW_COUNT;
    RETURN jobs_deleted + dead_deleted;
END;
$$;

-- ==== sql/70_read.sql
-- Reading jobs: one shape for "a job", whichever table holds it.

-- all_jobs: every job, live or dead-lettered, as one row type. status is one of
-- pending (a retry waiting shows pending with error set), running, completed,
-- cancelled, dead. finished is true once the job will not run again.
CREATE VIEW pyqueue.all_jobs AS
SELECT id, queue, status, payload, priority, attempt, max_attempts, run_at,
       progress, progress_message, result, error, traceback, idempotency_key,
       worker, locked_until, created_at, started_at, failed_at, finished_at,
       NULL::bigint AS retried_as,
       status IN ('completed', 'cancelled') AS finished
FROM pyqueue.jobs
UNION ALL
SELECT id, queue, 'dead', payload, priority, attempt, max_attempts, NULL,
       progress, progress_message, NULL, error, traceback, idempotency_key,
       worker, NULL, created_at, started_at, failed_at, dead_at,
       retried_as,
       true
FROM pyqueue.dead_jobs;

-- get_job(job_id) -> pyqueue.all_jobs
-- One job by id. Raises (SQLSTATE P0002) when no job has that id.
CREATE FUNCTION pyqueue.get_job(job_id bigint) RETURNS pyqueue.all_jobs
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
DECLARE
    job all_jobs;
BEGIN
    SELECT * INTO job FROM all_jobs WHERE id = job_id;
    IF NOT FOUND THEN
        PERFORM _job_not_found(job_id);
    END IF;
    RETURN job;
END;
$$;

-- list_jobs(status, queue, max_rows) -> SETOF pyqueue.all_jobs
-- Jobs newest first, optionally of one status and one queue, at most max_rows.
CREATE FUNCTION pyqueue.list_jobs(
    status   text    DEFAULT NULL,
    queue    text    DEFAULT NULL,
    max_rows integer DEFAULT 100
) RETURNS SETOF pyqueue.all_jobs
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    IF status NOT IN ('pending', 'running', 'completed', 'cancelled', 'dead') THEN
        RAISE EXCEPTION 'pyqueue: unknown status %', quote_literal(left(status, 40))
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A status is one of pending, running, completed, cancelled, dead.';
    END IF;
    IF queue IS NOT NULL THEN
        PERFORM _check_queue(queue);
    END IF;
    PERFORM _check_range('max_rows', max_rows, 1, 100000);
    RETURN QUERY
    SELECT * FROM all_jobs a
    WHERE (status IS NULL OR a.status = status)
      AND (queue IS NULL OR a.queue = queue)
    ORDER BY a.id DESC
    LIMIT coalesce(max_rows, 100);
END;
$$;

-- schema_version() -> integer
-- The version of the pyqueue schema in this database. Each migration that
-- changes the API raises it; a client refuses a schema newer than it knows.
CREATE FUNCTION pyqueue.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
    SELECT 1;
$$;

-- ==== sql/80_views.sql
-- Monitoring views: plain SELECTs for psql users and the monitor role.
-- sql/monitoring.sql shows the everyday queries over them.

-- queue_stats: one row per queue: jobs by status, how many pending jobs are due
-- now, how many of those are retries (an error is set), and how long the oldest
-- due job has waited. dead counts dead letters not yet replayed.
CREATE VIEW pyqueue.queue_stats AS
SELECT queue,
       count(*) FILTER (WHERE status = 'pending')                         AS pending,
       count(*) FILTER (WHERE status = 'pending' AND run_at <= now())     AS due,
       count(*) FILTER (WHERE status = 'pending' AND error IS NOT NULL)   AS retrying,
       count(*) FILTER (WHERE status = 'running')                         AS running,
       count(*) FILTER (WHERE status = 'completed')                       AS completed,
       count(*) FILTER (WHERE status = 'cancelled')                       AS cancelled,
       count(*) FILTER (WHERE status = 'dead')                            AS dead,
       date_trunc('second', now() - min(run_at) FILTER (WHERE status = 'pending' AND run_at <= now()))
                                                                          AS oldest_due_age
FROM (
    SELECT queue, status, run_at, error FROM pyqueue.jobs
    UNION ALL
    SELECT queue, 'dead', NULL, error FROM pyqueue.dead_jobs WHERE retried_as IS NULL
) AS j
GROUP BY queue
ORDER BY queue;

-- throughput: per queue and minute over the last hour, jobs completed and
-- failures (a failed run that will be retried, counted at its latest failure,
-- plus jobs dead-lettered).
CREATE VIEW pyqueue.throughput AS
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
CREATE VIEW pyqueue.running_jobs AS
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
CREATE VIEW pyqueue.slow_jobs AS
SELECT * FROM pyqueue.running_jobs
WHERE running_for > interval '5 minutes' OR lease_expired;

-- dead_letters: dead-lettered jobs, newest first, with the last error and, once
-- replayed, the id of the new job.
CREATE VIEW pyqueue.dead_letters AS
SELECT id, queue, attempt, max_attempts, error, payload, created_at, dead_at,
       retried_as, retried_at, traceback
FROM pyqueue.dead_jobs
ORDER BY dead_at DESC, id DESC;

-- ==== sql/90_roles.sql
-- Roles: least privilege. Three NOLOGIN roles that an operator grants to login
-- roles (GRANT pyqueue_worker TO app_worker). The functions are SECURITY
-- DEFINER with a fixed search_path, so these roles reach the tables only
-- through them; nothing in the schema is granted to PUBLIC.
--
--   pyqueue_producer  enqueue jobs and read their status
--   pyqueue_worker    claim, complete, fail, heartbeat, progress, release, recover
--   pyqueue_monitor   read the monitoring views
--
-- Operator actions (cancel, retry_dead, purge, configure_queue) stay with the
-- schema owner. Roles belong to the whole cluster: they are created here only if
-- missing, and shared by every database that runs pyqueue.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['pyqueue_producer', 'pyqueue_worker', 'pyqueue_monitor'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', role_name);
        END IF;
    END LOOP;
END;
$$;

REVOKE ALL ON SCHEMA pyqueue FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA pyqueue FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA pyqueue FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pyqueue FROM PUBLIC;
REVOKE ALL ON TYPE pyqueue.claimed_job FROM PUBLIC;
REVOKE ALL ON DOMAIN pyqueue.job_status FROM PUBLIC;

GRANT USAGE ON SCHEMA pyqueue TO pyqueue_producer, pyqueue_worker, pyqueue_monitor;

GRANT EXECUTE ON FUNCTION
    pyqueue.enqueue(text, jsonb, timestamptz, interval, integer, integer, text, interval, interval),
    pyqueue.enqueue_batch(text, jsonb[], timestamptz, interval, integer, integer, text[], interval, interval),
    pyqueue.get_job(bigint),
    pyqueue.list_jobs(text, text, integer),
    pyqueue.schema_version()
TO pyqueue_producer;

GRANT EXECUTE ON FUNCTION
    pyqueue.claim_batch(text[], text, integer, interval),
    pyqueue.complete(bigint, uuid, jsonb),
    pyqueue.complete_batch(bigint[], uuid[], jsonb[]),
    pyqueue.fail(bigint, uuid, text, text),
    pyqueue.heartbeat(bigint[], uuid[], interval),
    pyqueue.report_progress(bigint, uuid, integer, text),
    pyqueue.release(bigint[], uuid[]),
    pyqueue.recover_expired(integer),
    pyqueue.get_job(bigint),
    pyqueue.schema_version()
TO pyqueue_worker;
GRANT USAGE ON TYPE pyqueue.claimed_job TO pyqueue_worker;

GRANT SELECT ON
    pyqueue.queue_stats,
    pyqueue.throughput,
    pyqueue.running_jobs,
    pyqueue.slow_jobs,
    pyqueue.dead_letters
TO pyqueue_monitor;
GRANT EXECUTE ON FUNCTION pyqueue.schema_version() TO pyqueue_monitor;
