-- Maintenance: the housekeeping that keeps a queue running for months with
-- nobody watching. Workers run maintain() on their own; anyone may call it.

-- _purge_finished(max_rows) -> integer (the number of jobs deleted)
-- Deletes at most max_rows completed and cancelled jobs that finished longer
-- ago than their queue's retention, oldest first, skipping rows locked by
-- others. Bounded, so that no pass holds locks or a transaction for long.
CREATE OR REPLACE FUNCTION pyqueue._purge_finished(max_rows integer) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    deleted integer;
BEGIN
    WITH doomed AS (
        SELECT j.id
        FROM pyqueue.jobs j
        WHERE j.status IN ('completed', 'cancelled')
          -- No queue keeps finished jobs for less than the shortest retention:
          -- the index range ends there, before the recent rows.
          AND j.finished_at < now() - (SELECT min(retention) FROM pyqueue.queues)
          AND j.finished_at < now() - (
              SELECT coalesce(q.retention, d.retention)
              FROM pyqueue.queues d LEFT JOIN pyqueue.queues q ON q.name = j.queue
              WHERE d.name = '*')
        ORDER BY j.finished_at
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM pyqueue.jobs j USING doomed WHERE j.id = doomed.id RETURNING 1
    )
    SELECT count(*) INTO deleted FROM gone;
    RETURN deleted;
END;
$$;

-- _purge_dead(max_rows) -> integer (the number of dead letters deleted)
-- Deletes at most max_rows dead letters, oldest first: those dead longer than
-- their queue's dead_retention, and those replayed longer ago than its
-- retention (as purge() does).
CREATE OR REPLACE FUNCTION pyqueue._purge_dead(max_rows integer) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    deleted integer;
BEGIN
    WITH doomed AS (
        SELECT dj.id
        FROM pyqueue.dead_jobs dj
        CROSS JOIN LATERAL (
            SELECT coalesce(q.dead_retention, d.dead_retention) AS dead_retention,
                   coalesce(q.retention, d.retention) AS retention
            FROM pyqueue.queues d LEFT JOIN pyqueue.queues q ON q.name = dj.queue
            WHERE d.name = '*'
        ) AS s
        WHERE dj.dead_at < now() - s.dead_retention
           OR dj.retried_at < now() - s.retention
        ORDER BY dj.dead_at
        LIMIT max_rows
        FOR UPDATE OF dj SKIP LOCKED
    ), gone AS (
        DELETE FROM pyqueue.dead_jobs dj USING doomed WHERE dj.id = doomed.id RETURNING 1
    )
    SELECT count(*) INTO deleted FROM gone;
    RETURN deleted;
END;
$$;

-- _forget_ticks(max_rows) -> integer (the number of fired ticks forgotten)
-- Deletes at most max_rows rows of schedule_runs fired longer ago than the
-- default retention, oldest first, but never a schedule's last tick: the
-- schedules view shows it, and a tick's row is what keeps it from firing twice.
CREATE OR REPLACE FUNCTION pyqueue._forget_ticks(max_rows integer) RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    deleted integer;
BEGIN
    WITH doomed AS (
        SELECT r.schedule, r.tick
        FROM pyqueue.schedule_runs r
        WHERE r.fired_at < now() - (SELECT retention FROM pyqueue.queues WHERE name = '*')
          AND r.tick < (SELECT max(l.tick) FROM pyqueue.schedule_runs l
                        WHERE l.schedule = r.schedule)
        ORDER BY r.fired_at
        LIMIT max_rows
        FOR UPDATE OF r SKIP LOCKED
    ), gone AS (
        DELETE FROM pyqueue.schedule_runs r USING doomed
        WHERE (r.schedule, r.tick) = (doomed.schedule, doomed.tick)
        RETURNING 1
    )
    SELECT count(*) INTO deleted FROM gone;
    RETURN deleted;
END;
$$;

-- maintain(every, max_rows) -> jsonb
-- One bounded pass of housekeeping; returns what it did:
--   ran          false when the pass was skipped (then `reason` says why)
--   recovered    running jobs whose lease ran out or whose run timed out
--                (recover_expired)
--   fired        schedules fired, one job each
--   purged       completed and cancelled jobs past their queue's retention
--   dead_purged  dead letters past their queue's dead_retention
--   more         a bound was reached: call again for the rest
-- A pass also forgets the fired ticks of schedules past the default retention
-- (_forget_ticks). At most max_rows jobs, max_rows dead letters and max_rows
-- ticks are deleted a pass, so a pass is a short transaction that takes no
-- lock a claim waits for, and a backlog of expired rows goes over several
-- passes. One pass at a time
-- across the fleet: a call that finds another running is skipped. With
-- `every`, a call is also skipped when the last pass started less than `every`
-- ago, so that workers that each call it every `every` make one pass per
-- `every` between them, however many they are.
CREATE OR REPLACE FUNCTION pyqueue.maintain(
    every    interval DEFAULT NULL,
    max_rows integer  DEFAULT 10000
) RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
DECLARE
    last_run    timestamptz;
    recovered   integer;
    fired       integer;
    purged      integer;
    dead_purged integer;
    forgotten   integer;
    result      jsonb;
BEGIN
    PERFORM _check_interval('every', every, allow_zero => true);
    IF max_rows IS NULL THEN
        RAISE EXCEPTION 'pyqueue: max_rows must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM _check_range('max_rows', max_rows, 1, 1000000);
    IF NOT pg_try_advisory_xact_lock(hashtext('pyqueue.maintain')) THEN
        RETURN jsonb_build_object('ran', false, 'reason', 'another session is maintaining');
    END IF;
    SELECT last_run_at INTO last_run FROM maintenance;
    IF last_run > now() - every THEN
        RETURN jsonb_build_object('ran', false, 'reason', 'the last pass started less than '
                                                          || every || ' ago');
    END IF;

    recovered := recover_expired(1000);
    fired := _fire_schedules(1000);
    purged := _purge_finished(max_rows);
    dead_purged := _purge_dead(max_rows);
    forgotten := _forget_ticks(max_rows);
    result := jsonb_build_object(
        'ran', true, 'recovered', recovered, 'fired', fired, 'purged', purged,
        'dead_purged', dead_purged,
        'more', recovered >= 1000 OR fired >= 1000 OR purged >= max_rows
                OR dead_purged >= max_rows OR forgotten >= max_rows);
    UPDATE maintenance SET last_run_at = now(), last_result = result;
    RETURN result;
END;
$$;
