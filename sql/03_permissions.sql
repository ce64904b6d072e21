-- Queue-level permissions: which queues a role may enqueue to, work or read.
--
-- The four roles of sql/90_roles.sql say which functions a login may call;
-- the grants here say on which queues. A role with no grant keeps the
-- behaviour of schema version 4: every queue. A role with any grant may act
-- only on the queues its grants match, each grant naming its actions:
--   enqueue  enqueue, enqueue_batch, schedule, retry_dead (each adds a job)
--   work     claim_batch and what a lease allows (complete, fail, heartbeat,
--            report_progress, release); cancel, purge and configure_queue
--   read     get_job, list_jobs, job_summaries (and so waiting for a job);
--            an idempotency key, whose answer is the id of the job holding it
--
-- Whose grants: the session's. Every public function is SECURITY DEFINER, so
-- current_user inside it is the schema owner and says nothing about the
-- caller. The checks read session_user (the login, which SET ROLE does not
-- change) and, after SET ROLE, the role set as well (current_setting('role'),
-- which a definer function does not change either); each of the two that
-- holds grants must allow the action. So a restricted login cannot shed its
-- grants by SET ROLE to a role it belongs to, and a pooler that logs in as one
-- user and sets a role per tenant restricts each tenant. A definer function of
-- the application's own that calls pyqueue acts for the session that called it.

-- _grant_matches(pattern, queue) -> boolean: the pattern names the queue, or
-- ends in '*' and the queue starts with what comes before it. starts_with, not
-- LIKE: '_' is a wildcard to LIKE and a letter of queue names.
CREATE OR REPLACE FUNCTION pyqueue._grant_matches(pattern text, queue text) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT pattern = queue
        OR (right(pattern, 1) = '*' AND starts_with(queue, left(pattern, -1)))
$$;

-- _refusing_role(queue, action) -> text: the session's role (see above) whose
-- grants do not allow `action` on `queue`, or NULL when it is allowed. One
-- query, which for a session with no grants is a primary-key probe per role.
CREATE OR REPLACE FUNCTION pyqueue._refusing_role(queue text, action text) RETURNS text
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    refusing text;
BEGIN
    SELECT r.name INTO refusing
    FROM unnest(ARRAY[session_user::text, nullif(current_setting('role'), 'none')]) AS r(name)
    WHERE EXISTS (SELECT 1 FROM pyqueue.queue_grants g WHERE g.role = r.name)
      AND NOT EXISTS (SELECT 1 FROM pyqueue.queue_grants g
                      WHERE g.role = r.name AND action = ANY (g.actions)
                        AND pyqueue._grant_matches(g.pattern, queue))
    LIMIT 1;
    RETURN refusing;
END;
$$;

-- _restricted() -> boolean: some role of the session holds queue grants. Set
-- functions (list_jobs) ask once, then filter row by row only when it is true.
CREATE OR REPLACE FUNCTION pyqueue._restricted() RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN EXISTS (SELECT 1 FROM pyqueue.queue_grants g
                   WHERE g.role IN (session_user::text, nullif(current_setting('role'), 'none')));
END;
$$;

-- _may(queue, action) -> boolean: the session may do `action` on `queue`.
CREATE OR REPLACE FUNCTION pyqueue._may(queue text, action text) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    RETURN pyqueue._refusing_role(queue, action) IS NULL;
END;
$$;

-- _authorize(queue, action): raise SQLSTATE 42501 (insufficient_privilege),
-- naming the role, the action and the queue, unless the session may do
-- `action` on `queue`. The first statement of every public function that acts
-- on a queue.
CREATE OR REPLACE FUNCTION pyqueue._authorize(queue text, action text) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    refusing text;
BEGIN
    -- The everyday case, on every enqueue and claim: no grant for the
    -- session's roles. _restricted()'s query, written out here to spare the
    -- hot path a nested call.
    IF NOT EXISTS (SELECT 1 FROM pyqueue.queue_grants g
                   WHERE g.role IN (session_user::text, nullif(current_setting('role'), 'none'))) THEN
        RETURN;
    END IF;
    refusing := pyqueue._refusing_role(queue, action);
    IF refusing IS NOT NULL THEN
        RAISE EXCEPTION 'pyqueue: role % may not % on queue %', quote_ident(refusing), action,
            quote_literal(queue)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'The queue owner grants it with pyqueue.grant_queues(role, pattern, actions).';
    END IF;
END;
$$;

-- _authorize_leases(job_ids, lease_tokens, action): _authorize(queue, action)
-- for the queue of each job the caller holds (its token is the job's current
-- one). Jobs not held are left to the function that calls this, which reports
-- them lost as ever: a restricted role learns nothing about other queues'
-- jobs by naming their ids.
CREATE OR REPLACE FUNCTION pyqueue._authorize_leases(job_ids bigint[], lease_tokens uuid[],
                                                     action text)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT pyqueue._restricted() THEN
        RETURN;
    END IF;
    PERFORM pyqueue._authorize(q.queue, action)
    FROM (SELECT DISTINCT j.queue
          FROM pyqueue.jobs j
          JOIN unnest(job_ids, lease_tokens) AS h(id, token)
            ON j.id = h.id AND j.lease_token = h.token) AS q;
END;
$$;

-- _authorize_queues(queues, action): _authorize(queue, action) for each queue.
CREATE OR REPLACE FUNCTION pyqueue._authorize_queues(queues text[], action text) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF pyqueue._restricted() THEN
        PERFORM pyqueue._authorize(q.name, action) FROM unnest(queues) AS q(name);
    END IF;
END;
$$;

-- _authorize_job(job_id, action): _authorize(queue, action) for the queue of
-- the job, live or dead-lettered. An unknown id passes: the function that
-- calls this reports it as it always has.
CREATE OR REPLACE FUNCTION pyqueue._authorize_job(job_id bigint, action text) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF pyqueue._restricted() THEN
        PERFORM pyqueue._authorize(a.queue, action)
        FROM (SELECT j.queue FROM pyqueue.jobs j WHERE j.id = job_id
              UNION ALL
              SELECT d.queue FROM pyqueue.dead_jobs d WHERE d.id = job_id) AS a;
    END IF;
END;
$$;

-- _check_pattern(pattern): a grant's pattern is a queue name, or a prefix of
-- queue names ending in '*' ('billing.*', 'billing*'); '*' alone is every queue.
CREATE OR REPLACE FUNCTION pyqueue._check_pattern(pattern text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    IF pattern = '*' OR pyqueue._is_queue_name(pattern)
       OR (right(pattern, 1) = '*' AND pyqueue._is_queue_name(left(pattern, -1))) THEN
        RETURN;
    END IF;
    RAISE EXCEPTION 'pyqueue: invalid queue pattern %', coalesce(quote_literal(left(pattern, 120)), 'NULL')
        USING ERRCODE = 'invalid_parameter_value',
              HINT = 'A pattern is a queue name, or a prefix of queue names ending in * '
                     '(billing.*), or * for every queue.';
END;
$$;

-- grant_queues(role, pattern, actions) -> text[] (the actions now granted on pattern)
-- Lets `role` do `actions` (among enqueue, work, read) on the queues `pattern`
-- matches, adding to what it had on that pattern. From its first grant on,
-- the role may act only on queues its grants match. The role must exist; its
-- membership of pyqueue_producer, _worker or _operator still decides which
-- functions it may call at all.
CREATE OR REPLACE FUNCTION pyqueue.grant_queues(role text, pattern text, actions text[])
RETURNS text[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    granted text[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = grant_queues.role) THEN
        RAISE EXCEPTION 'pyqueue: no role named %', coalesce(quote_ident(left(grant_queues.role, 120)), 'NULL')
            USING ERRCODE = 'undefined_object';
    END IF;
    PERFORM _check_pattern(grant_queues.pattern);
    IF coalesce(cardinality(grant_queues.actions), 0) = 0
       OR NOT grant_queues.actions <@ ARRAY['enqueue', 'work', 'read']
       OR array_position(grant_queues.actions, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'pyqueue: actions must name one or more of enqueue, work, read; got %',
            coalesce(left(grant_queues.actions::text, 200), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO queue_grants AS g (role, pattern, actions)
    VALUES (grant_queues.role, grant_queues.pattern,
            ARRAY(SELECT DISTINCT a FROM unnest(grant_queues.actions) a ORDER BY a))
    ON CONFLICT (role, pattern) DO UPDATE
    SET actions = ARRAY(SELECT DISTINCT a FROM unnest(g.actions || excluded.actions) a ORDER BY a),
        granted_at = now()
    RETURNING g.actions INTO granted;
    RETURN granted;
END;
$$;

-- revoke_queues(role, pattern) -> boolean (false when there was no such grant)
-- Removes the grant of `role` on `pattern` (as written in grant_queues), all
-- its actions. A role without grants acts on every queue, so removing a role's
-- last grant would widen what it may do: that is refused, and pattern NULL
-- says it on purpose, removing every grant of the role (it is unrestricted
-- again, as before its first grant). To take a role's queues away entirely,
-- revoke its pyqueue_* role instead.
CREATE OR REPLACE FUNCTION pyqueue.revoke_queues(role text, pattern text) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF revoke_queues.pattern IS NOT NULL
       AND EXISTS (SELECT 1 FROM queue_grants g
                   WHERE g.role = revoke_queues.role AND g.pattern = revoke_queues.pattern)
       AND NOT EXISTS (SELECT 1 FROM queue_grants g
                       WHERE g.role = revoke_queues.role AND g.pattern <> revoke_queues.pattern) THEN
        RAISE EXCEPTION 'pyqueue: % is the last queue grant of role %: without it the role acts on every queue',
            quote_literal(revoke_queues.pattern), quote_ident(revoke_queues.role)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'revoke_queues(role, NULL) lifts every restriction of the role; '
                         'REVOKE pyqueue_producer (or _worker) FROM the role takes its queues away.';
    END IF;
    DELETE FROM queue_grants g
    WHERE g.role = revoke_queues.role
      AND (revoke_queues.pattern IS NULL OR g.pattern = revoke_queues.pattern);
    RETURN FOUND;
END;
$$;
