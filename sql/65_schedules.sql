-- Cron schedules: a job on a queue at every tick of a cron expression, fired
-- by maintain(), so that any worker, in any language, fires them by calling SQL.
-- The expression is read as wall-clock time in the schedule's zone
-- (_cron_next, sql/15_cron.sql).

-- schedule(name, cron, queue, payload, tz, priority, max_attempts)
--   -> timestamptz (the next tick)
-- Creates the schedule `name`, or replaces it: the job it fires is `payload`
-- on `queue` with the given priority and max_attempts (NULL: the queue's).
-- Replacing a schedule with the same cron and zone keeps its next tick, so an
-- application may call this on every start without skipping or repeating one.
-- Raises, naming it, on a bad name, queue, payload, cron expression or zone.
CREATE OR REPLACE FUNCTION pyqueue.schedule(
    name         text,
    cron         text,
    queue        text,
    payload      jsonb   DEFAULT '{}',
    tz           text    DEFAULT 'UTC',
    priority     integer DEFAULT 0,
    max_attempts integer DEFAULT NULL
) RETURNS timestamptz
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    next_run timestamptz;
BEGIN
    PERFORM _authorize(schedule.queue, 'enqueue');
    -- Replacing a schedule moves it off its old queue: that needs 'enqueue' there too.
    PERFORM _authorize(s.queue, 'enqueue') FROM cron_schedules s WHERE s.name = schedule.name;
    IF _is_queue_name(schedule.name) IS NOT TRUE THEN
        RAISE EXCEPTION 'pyqueue: invalid schedule name %',
            coalesce(quote_literal(left(schedule.name, 120)), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'A schedule name has 1 to 100 characters: letters, digits and . _ - :, '
                         'starting with a letter or digit.';
    END IF;
    PERFORM _check_job_options(schedule.queue, NULL, NULL, schedule.priority,
                               schedule.max_attempts, NULL, NULL, NULL);
    PERFORM _check_payload('payload', schedule.payload,
                           (queue_settings(schedule.queue)).max_payload_bytes);
    PERFORM _cron_check(schedule.cron, schedule.tz);
    next_run := _cron_next(schedule.cron, now(), schedule.tz);

    INSERT INTO cron_schedules AS s (name, cron, tz, queue, payload, priority, max_attempts,
                                     next_run_at)
    VALUES (schedule.name, schedule.cron, schedule.tz, schedule.queue, schedule.payload,
            schedule.priority, schedule.max_attempts, next_run)
    ON CONFLICT (name) DO UPDATE
    SET cron         = excluded.cron,
        tz           = excluded.tz,
        queue        = excluded.queue,
        payload      = excluded.payload,
        priority     = excluded.priority,
        max_attempts = excluded.max_attempts,
        next_run_at  = CASE WHEN (s.cron, s.tz) = (excluded.cron, excluded.tz) THEN s.next_run_at
                            ELSE excluded.next_run_at END,
        updated_at   = now()
    RETURNING s.next_run_at INTO next_run;
    RETURN next_run;
END;
$$;

-- unschedule(name) -> boolean
-- Removes the schedule `name` and its history of ticks; jobs it fired stay.
-- Returns false when there was no such schedule.
CREATE OR REPLACE FUNCTION pyqueue.unschedule(name text) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM _authorize(s.queue, 'enqueue') FROM cron_schedules s WHERE s.name = unschedule.name;
    DELETE FROM cron_schedules WHERE name = unschedule.name;
    RETURN FOUND;
END;
$$;

-- _fire_schedules(max_schedules) -> integer (how many fired)
-- Fires each schedule whose next tick has come: one job, due at that tick.
-- A tick fires once: its row in schedule_runs is inserted before the job, and
-- the primary key turns away a second insert, whoever makes it. After downtime
-- a schedule fires once, for its first missed tick, and moves on to the first
-- tick after now: one catch-up run, not one per missed tick. Only schedules
-- on queues the session may enqueue to (sql/03_permissions.sql): a worker
-- restricted to its queues fires theirs, and leaves the others due for a
-- session that may.
CREATE OR REPLACE FUNCTION pyqueue._fire_schedules(max_schedules integer) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    due    record;
    new_job bigint;
    fired  integer := 0;
BEGIN
    FOR due IN
        SELECT * FROM pyqueue.cron_schedules
        WHERE next_run_at <= now() AND pyqueue._may(queue, 'enqueue')
        ORDER BY next_run_at
        LIMIT max_schedules
        FOR UPDATE SKIP LOCKED
    LOOP
        INSERT INTO pyqueue.schedule_runs (schedule, tick)
        VALUES (due.name, due.next_run_at)
        ON CONFLICT DO NOTHING;
        IF FOUND THEN
            new_job := pyqueue.enqueue(due.queue, due.payload, run_at => due.next_run_at,
                                      priority => due.priority,
                                      max_attempts => due.max_attempts);
            UPDATE pyqueue.schedule_runs SET job_id = new_job
            WHERE schedule = due.name AND tick = due.next_run_at;
            fired := fired + 1;
        END IF;
        UPDATE pyqueue.cron_schedules
        SET next_run_at = coalesce(pyqueue._cron_next(due.cron, greatest(now(), due.next_run_at),
                                                      due.tz),
                                   'infinity')
        WHERE name = due.name;
    END LOOP;
    RETURN fired;
END;
$$;

-- schedules: each schedule with its next tick, and its last fired tick
-- (last_run_at), when that fired (last_fired_at) and the job it made.
CREATE OR REPLACE VIEW pyqueue.schedules AS
SELECT s.name, s.cron, s.tz, s.queue, s.payload, s.priority, s.max_attempts, s.next_run_at,
       r.tick AS last_run_at, r.fired_at AS last_fired_at, r.job_id AS last_job_id,
       s.created_at, s.updated_at
FROM pyqueue.cron_schedules s
LEFT JOIN LATERAL (
    SELECT tick, fired_at, job_id FROM pyqueue.schedule_runs
    WHERE schedule = s.name
    ORDER BY tick DESC
    LIMIT 1
) AS r ON true;
