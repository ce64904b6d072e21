-- Argument checks shared by the public functions. Each raises SQLSTATE 22023
-- (invalid_parameter_value) with a message that names the argument, before
-- anything is written.
--
-- Internal helpers (names starting with _) carry no SET search_path, unlike
-- the public functions: they run only inside those SECURITY DEFINER functions
-- (nobody else may execute them) and name schema objects in full: a SET clause
-- is applied and undone on every nested call, and enqueue makes several.

-- _is_queue_name(queue) -> boolean (NULL for NULL): a queue name is 1 to 100
-- characters, letters, digits and . _ - :, starting with a letter or digit.
-- Names are identifiers people type in psql and shells, so quotes, spaces and
-- control characters are refused. SQL, so that the planner inlines it. The
-- length is checked apart from the regex: a bounded repeat ({0,99}) makes the
-- regex engine do far more work for every name.
CREATE OR REPLACE FUNCTION pyqueue._is_queue_name(queue text) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT queue ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]*$' AND length(queue) <= 100
$$;

-- _check_queue(queue): raise unless queue is a queue name.
CREATE OR REPLACE FUNCTION pyqueue._check_queue(queue text) RETURNS void
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
CREATE OR REPLACE FUNCTION pyqueue._check_range(name text, value numeric, low numeric, high numeric)
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
CREATE OR REPLACE FUNCTION pyqueue._check_interval(name text, value interval, allow_zero boolean DEFAULT false)
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
CREATE OR REPLACE FUNCTION pyqueue._job_not_found(job_id bigint) RETURNS void
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
CREATE OR REPLACE FUNCTION pyqueue._require_job(job_id bigint) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pyqueue.jobs WHERE id = job_id)
       AND NOT EXISTS (SELECT 1 FROM pyqueue.dead_jobs WHERE id = job_id) THEN
        PERFORM pyqueue._job_not_found(job_id);
    END IF;
END;
$$;

-- _in_time(started_at, timeout) -> boolean: a run that started at started_at is
-- still within its timeout (always, with none). Past it nobody holds the job:
-- complete, fail, heartbeat and progress report it lost, and recover_expired()
-- fails it as timed out. SQL, so that the planner inlines it.
CREATE OR REPLACE FUNCTION pyqueue._in_time(started_at timestamptz, timeout interval)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT timeout IS NULL OR started_at + timeout > now()
$$;

-- _check_pairs(job_ids, lease_tokens): the two arrays of a batch call pair up.
CREATE OR REPLACE FUNCTION pyqueue._check_pairs(job_ids bigint[], lease_tokens uuid[]) RETURNS void
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
