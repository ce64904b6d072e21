-- Roles: least privilege. Four NOLOGIN roles that the schema owner grants to
-- login roles (GRANT pyqueue_worker TO app_worker). The functions are SECURITY
-- DEFINER with a fixed search_path, so these roles reach the tables only
-- through them; nothing in the schema is granted to PUBLIC.
--
--   pyqueue_producer  enqueue jobs and read jobs (get_job, list_jobs, job_summaries)
--   pyqueue_worker    claim, complete, fail, heartbeat, progress, release, recover,
--                     maintain
--   pyqueue_monitor   read the monitoring views
--   pyqueue_operator  for people and the dashboard: the monitor's views, reading
--                     jobs, cancel, retry_dead, pause_queue, resume_queue and
--                     configure_queue
--
-- Which queues a login may act on is a second question, answered by its queue
-- grants (sql/03_permissions.sql). purge, schedule, unschedule, grant_queues
-- and revoke_queues stay with the schema owner. Roles belong to the whole
-- cluster: they are created here only if missing, and shared by every database
-- that runs pyqueue.

DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['pyqueue_producer', 'pyqueue_worker', 'pyqueue_monitor',
                                      'pyqueue_operator'] LOOP
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
REVOKE ALL ON TYPE pyqueue.fail_outcome FROM PUBLIC;
REVOKE ALL ON TYPE pyqueue.job_summary FROM PUBLIC;
REVOKE ALL ON DOMAIN pyqueue.job_status FROM PUBLIC;

GRANT USAGE ON SCHEMA pyqueue
TO pyqueue_producer, pyqueue_worker, pyqueue_monitor, pyqueue_operator;

GRANT EXECUTE ON FUNCTION
    pyqueue.enqueue(text, jsonb, timestamptz, interval, integer, integer, text, interval, interval,
                    interval, text, interval),
    pyqueue.enqueue_batch(text, jsonb[], timestamptz, interval, integer, integer, text[], interval,
                          interval, interval, text, interval),
    pyqueue.get_job(bigint),
    pyqueue.list_jobs(text, text, integer, bigint),
    pyqueue.job_summaries(text, text, bigint, integer, text),
    pyqueue.job_actions(text, bigint),
    pyqueue.schema_version(),
    pyqueue.schema_compatibility()
TO pyqueue_producer;

GRANT EXECUTE ON FUNCTION
    pyqueue.claim_batch(text[], text, integer, interval, integer),
    pyqueue.claim_wait(text[]),
    pyqueue.complete(bigint, uuid, jsonb),
    pyqueue.complete_batch(bigint[], uuid[], jsonb[]),
    pyqueue.complete_or_raise(bigint, uuid, jsonb),
    pyqueue.fail(bigint, uuid, text, text),
    pyqueue.fail_batch(bigint[], uuid[], text[], text[], boolean[]),
    pyqueue.heartbeat(bigint[], uuid[], interval),
    pyqueue.report_progress(bigint, uuid, integer, text),
    pyqueue.release(bigint[], uuid[]),
    pyqueue.recover_expired(integer),
    pyqueue.maintain(interval, integer),
    pyqueue.get_job(bigint),
    pyqueue.job_actions(text, bigint),
    pyqueue.schema_version(),
    pyqueue.schema_compatibility()
TO pyqueue_worker;
GRANT USAGE ON TYPE pyqueue.claimed_job, pyqueue.fail_outcome TO pyqueue_worker;
GRANT USAGE ON TYPE pyqueue.job_summary TO pyqueue_producer, pyqueue_operator;

GRANT SELECT ON
    pyqueue.queue_stats,
    pyqueue.throughput,
    pyqueue.running_jobs,
    pyqueue.slow_jobs,
    pyqueue.dead_letters,
    pyqueue.job_statuses,
    pyqueue.schedules,
    pyqueue.queue_metrics
TO pyqueue_monitor;
GRANT SELECT ON pyqueue.job_statuses TO pyqueue_producer, pyqueue_worker;
GRANT EXECUTE ON FUNCTION
    pyqueue.job_actions(text, bigint),
    pyqueue.schema_version(),
    pyqueue.schema_compatibility()
TO pyqueue_monitor;

-- The operator: what the dashboard and the CLI's reading and operator commands
-- need, so that neither runs as the schema owner.
GRANT SELECT ON
    pyqueue.queue_stats,
    pyqueue.throughput,
    pyqueue.running_jobs,
    pyqueue.slow_jobs,
    pyqueue.dead_letters,
    pyqueue.job_statuses,
    pyqueue.schedules,
    pyqueue.queue_metrics
TO pyqueue_operator;
GRANT EXECUTE ON FUNCTION
    pyqueue.get_job(bigint),
    pyqueue.list_jobs(text, text, integer, bigint),
    pyqueue.job_summaries(text, text, bigint, integer, text),
    pyqueue.job_actions(text, bigint),
    pyqueue.cancel(bigint),
    pyqueue.retry_dead(bigint),
    pyqueue.pause_queue(text),
    pyqueue.resume_queue(text),
    pyqueue.configure_queue(text, integer, interval, interval, interval, integer, interval,
                            interval, integer, integer, integer, interval, text, interval),
    pyqueue.schema_version(),
    pyqueue.schema_compatibility()
TO pyqueue_operator;
