"""Least privilege: the four pyqueue roles, checked by connecting as each of them.

The contract (issues 5 and 25, sql/90_roles.sql): a producer may enqueue and
read jobs, a worker may claim, finish, heartbeat, report progress, release and
recover, a monitor may read the monitoring views, an operator may read those
and jobs and cancel, retry and configure. Everything else, the tables above
all, answers SQLSTATE 42501 (insufficient_privilege), and nothing in schema
pyqueue is granted to PUBLIC. Which queues a role may act on is
tests/test_queue_permissions.py's subject.

Roles belong to the whole cluster, so each test creates LOGIN roles with names
of its own and drops them afterwards.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

import pyqueue

# Which public functions each role may execute: the contract under test. Any
# other function in schema pyqueue, internal ones included, must be refused.
ALLOWED_FUNCTIONS = {
    "pyqueue_producer": {
        "enqueue",
        "enqueue_batch",
        "get_job",
        "list_jobs",
        "job_summaries",
        "job_actions",
        "schema_version",
        "schema_compatibility",
    },
    "pyqueue_worker": {
        "claim_batch",
        "claim_wait",
        "complete",
        "complete_batch",
        "complete_or_raise",
        "fail",
        "fail_batch",
        "heartbeat",
        "report_progress",
        "release",
        "recover_expired",
        "maintain",
        "get_job",
        "job_actions",
        "schema_version",
        "schema_compatibility",
    },
    "pyqueue_monitor": {"job_actions", "schema_version", "schema_compatibility"},
    "pyqueue_operator": {
        "get_job",
        "list_jobs",
        "job_summaries",
        "job_actions",
        "cancel",
        "retry_dead",
        "configure_queue",
        "pause_queue",
        "resume_queue",
        "schema_version",
        "schema_compatibility",
    },
}
MONITOR_VIEWS = {
    "queue_stats",
    "throughput",
    "running_jobs",
    "slow_jobs",
    "dead_letters",
    "schedules",
    "queue_metrics",
}
# The words for job states, which every role may read to show them.
SHARED_VIEWS = {"job_statuses"}
# What only the schema owner may do.
OWNER_FUNCTIONS = {
    "purge",
    "schedule",
    "unschedule",
    "grant_queues",
    "revoke_queues",
}
# The operator's actions, which the other three roles may not take.
OPERATOR_ACTIONS = {"cancel", "retry_dead", "configure_queue", "pause_queue", "resume_queue"}
ROLES = tuple(ALLOWED_FUNCTIONS)


def _functions(db: psycopg.Connection[Any]) -> list[tuple[int, str, str]]:
    """(oid, name, a call with NULL arguments) for every function in schema pyqueue."""
    rows = db.execute(
        """
        SELECT p.oid::int, p.proname,
               format('SELECT pyqueue.%I(%s)', p.proname,
                      coalesce((SELECT string_agg(format('NULL::%s', format_type(t, NULL)), ', '
                                                  ORDER BY ord)
                                FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, ord)),
                               ''))
        FROM pg_proc p
        WHERE p.pronamespace = 'pyqueue'::regnamespace
        ORDER BY p.proname
        """
    ).fetchall()
    return [(int(oid), str(name), str(call)) for oid, name, call in rows]


@pytest.fixture
def logins(db: psycopg.Connection[Any], dsn: str) -> Iterator[dict[str, str]]:
    """A LOGIN role per pyqueue role, unique to this test: role -> its conninfo."""
    suffix = uuid.uuid4().hex[:10]
    password = uuid.uuid4().hex
    names = {role: f"t_{suffix}_{role.removeprefix('pyqueue_')}" for role in ROLES}
    for role, login in names.items():
        db.execute(f"CREATE ROLE {login} LOGIN PASSWORD '{password}'")
        db.execute(f"GRANT {role} TO {login}")
    try:
        yield {
            role: make_conninfo(dsn, user=login, password=password) for role, login in names.items()
        }
    finally:
        for login in names.values():
            db.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                [login],
            )
            # The roles own nothing and hold only their membership, so this is
            # enough; DROP OWNED would clean up if a failed test left something.
            db.execute(f"DROP OWNED BY {login}")
            db.execute(f"DROP ROLE {login}")


def connect(conninfo: str) -> psycopg.Connection[Any]:
    return psycopg.connect(conninfo, autocommit=True)


def assert_refused(conn: psycopg.Connection[Any], statement: str) -> None:
    user = conn.info.user
    try:
        conn.execute(statement)
    except errors.InsufficientPrivilege as error:
        assert error.sqlstate == "42501"
    else:
        pytest.fail(f"{user} was allowed: {statement}")


# ---- the catalogs ------------------------------------------------------------


def test_nothing_in_the_schema_is_granted_to_public(db):
    # Grantee 0 in an ACL is PUBLIC. A NULL proacl means the default ACL, which
    # for a function includes EXECUTE for PUBLIC: it counts as a grant.
    functions = db.execute(
        """
        SELECT p.oid::regprocedure::text FROM pg_proc p
        WHERE p.pronamespace = 'pyqueue'::regnamespace
          AND (p.proacl IS NULL
               OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0))
        """
    ).fetchall()
    assert functions == []
    relations = db.execute(
        """
        SELECT c.relname FROM pg_class c
        WHERE c.relnamespace = 'pyqueue'::regnamespace
          AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) a WHERE a.grantee = 0)
        """
    ).fetchall()
    assert relations == []
    # Standalone types (not the row types of tables and views, which follow
    # their relation): a NULL typacl means USAGE for PUBLIC.
    types = db.execute(
        """
        SELECT t.typname FROM pg_type t
        LEFT JOIN pg_class c ON c.oid = t.typrelid
        WHERE t.typnamespace = 'pyqueue'::regnamespace
          AND t.typelem = 0
          AND (c.oid IS NULL OR c.relkind = 'c')
          AND (t.typacl IS NULL
               OR EXISTS (SELECT 1 FROM aclexplode(t.typacl) a WHERE a.grantee = 0))
        """
    ).fetchall()
    assert types == []
    schema = db.execute(
        """
        SELECT EXISTS (SELECT 1 FROM pg_namespace n, aclexplode(n.nspacl) a
                       WHERE n.nspname = 'pyqueue' AND a.grantee = 0)
        """
    ).fetchone()
    assert schema == (False,)


def test_public_functions_are_security_definer_with_a_fixed_search_path(db):
    rows = db.execute(
        """
        SELECT p.proname, p.prosecdef,
               EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%%')
        FROM pg_proc p
        WHERE p.pronamespace = 'pyqueue'::regnamespace
        """
    ).fetchall()
    assert rows, "no functions found in schema pyqueue"
    # Internal _functions run only inside the definer functions that call them,
    # whose search_path they inherit (sql/01_checks.sql says why they set none).
    no_search_path = sorted(
        name
        for name, _, has_search_path in rows
        if not has_search_path and not name.startswith("_")
    )
    assert no_search_path == []
    not_definer = sorted(
        name for name, definer, _ in rows if not name.startswith("_") and not definer
    )
    assert not_definer == []


def test_each_role_may_execute_exactly_its_own_functions(db, logins):
    # The catalog's view of the contract: a function added later without a
    # deliberate grant (or with one too many) fails here.
    for role in ROLES:
        login = psycopg.conninfo.conninfo_to_dict(logins[role])["user"]
        for oid, name, _call in _functions(db):
            may = db.execute("SELECT has_function_privilege(%s, %s::oid, 'EXECUTE')",
                             [login, oid]).fetchone()  # fmt: skip
            assert may == (name in ALLOWED_FUNCTIONS[role],), f"{role} on {name}"


# ---- connecting as each role ------------------------------------------------

# Every kind of direct access to each table, as a role would try it.
TABLE_STATEMENTS = {
    "jobs": [
        "SELECT * FROM pyqueue.jobs",
        "INSERT INTO pyqueue.jobs (queue, payload, max_attempts) VALUES ('q', '{}', 1)",
        "UPDATE pyqueue.jobs SET priority = 1",
        "DELETE FROM pyqueue.jobs",
        "TRUNCATE pyqueue.jobs",
    ],
    "dead_jobs": [
        "SELECT * FROM pyqueue.dead_jobs",
        "INSERT INTO pyqueue.dead_jobs (id, queue, priority, attempt, max_attempts, payload,"
        " created_at) VALUES (1, 'q', 0, 1, 1, '{}', now())",
        "UPDATE pyqueue.dead_jobs SET priority = 1",
        "DELETE FROM pyqueue.dead_jobs",
        "TRUNCATE pyqueue.dead_jobs",
    ],
    "queues": [
        "SELECT * FROM pyqueue.queues",
        "INSERT INTO pyqueue.queues (name) VALUES ('q')",
        "UPDATE pyqueue.queues SET max_attempts = 1000",
        "DELETE FROM pyqueue.queues",
        "TRUNCATE pyqueue.queues",
    ],
    "others": [
        "SELECT * FROM pyqueue.all_jobs",
        "SELECT nextval('pyqueue.jobs_id_seq')",
        "SELECT * FROM pyqueue.queue_grants",
        "INSERT INTO pyqueue.queue_grants (role, pattern, actions) VALUES ('x', '*', '{read}')",
        "DELETE FROM pyqueue.queue_grants",
        "CREATE TABLE pyqueue.intruder (x int)",
    ],
}


# The refusals share one database per test: a fresh one costs a second, and
# each refused statement leaves it as it was (checked at the end).


def test_tables_are_out_of_reach(db, logins):
    db.execute("SELECT pyqueue.enqueue('emails', '{}')")
    for role in ROLES:
        with connect(logins[role]) as conn:
            for statements in TABLE_STATEMENTS.values():
                for statement in statements:
                    assert_refused(conn, statement)
    assert db.execute("SELECT count(*) FROM pyqueue.jobs").fetchone() == (1,)
    assert db.execute("SELECT max_attempts FROM pyqueue.queues").fetchall() == [(3,)]


def test_every_function_outside_the_role_is_refused(db, logins):
    functions = _functions(db)
    for role in ROLES:
        refused = [(n, c) for _, n, c in functions if n not in ALLOWED_FUNCTIONS[role]]
        assert {n for n, _ in refused} >= OWNER_FUNCTIONS
        if role != "pyqueue_operator":
            assert {n for n, _ in refused} >= OPERATOR_ACTIONS
        assert any(n.startswith("_") for n, _ in refused)
        with connect(logins[role]) as conn:
            for _name, call in refused:
                assert_refused(conn, call)


def test_monitoring_views_are_the_monitors_only(logins):
    for role in ("pyqueue_producer", "pyqueue_worker"):
        with connect(logins[role]) as conn:
            for view in sorted(MONITOR_VIEWS):
                assert_refused(conn, f"SELECT * FROM pyqueue.{view}")


def test_every_role_reads_the_words_for_job_states_and_their_actions(logins):
    for role in ROLES:
        with connect(logins[role]) as conn:
            words = conn.execute("SELECT status FROM pyqueue.job_statuses ORDER BY position")
            assert [w for (w,) in words] == ["pending", "running", "completed", "cancelled", "dead"]
            actions = conn.execute("SELECT pyqueue.job_actions('dead', NULL)").fetchone()
            assert actions == (["retry"],)


def test_producer_enqueues_and_reads_status(db, logins):
    with connect(logins["pyqueue_producer"]) as conn:
        job_id = conn.execute(
            "SELECT pyqueue.enqueue('emails', %s)", [Jsonb({"to": "a"})]
        ).fetchone()[0]
        again = conn.execute(
            "SELECT pyqueue.enqueue('emails', '{}', idempotency_key => 'k')"
        ).fetchone()[0]
        assert conn.execute(
            "SELECT pyqueue.enqueue('emails', '{}', idempotency_key => 'k')"
        ).fetchone() == (again,)
        batch = conn.execute(
            "SELECT * FROM pyqueue.enqueue_batch('emails', ARRAY['1', '2']::jsonb[])"
        ).fetchall()
        assert len(batch) == 2
        assert conn.execute(
            "SELECT status, payload FROM pyqueue.get_job(%s)", [job_id]
        ).fetchone() == (
            "pending",
            {"to": "a"},
        )
        listed = conn.execute("SELECT id FROM pyqueue.list_jobs(queue => 'emails')").fetchall()
        assert {r[0] for r in listed} == {job_id, again, *(r[0] for r in batch)}
    # The same through the Python client: enqueue and get_job work, operator
    # actions are refused.
    with pyqueue.Queue(logins["pyqueue_producer"]) as q:
        new_id = q.enqueue("emails", {"n": 1})
        assert q.get_job(new_id).status == "pending"
        with pytest.raises(errors.InsufficientPrivilege):
            q.cancel(new_id)
        with pytest.raises(errors.InsufficientPrivilege):
            q.purge()
    assert db.execute("SELECT count(*) FROM pyqueue.jobs WHERE status = 'pending'").fetchone() == (
        5,
    )


def test_worker_claims_and_finishes(db, logins):
    db.execute("SELECT pyqueue.enqueue_batch('work', ARRAY['1', '2', '3', '4']::jsonb[])")
    with connect(logins["pyqueue_worker"]) as conn:
        claimed = conn.execute(
            "SELECT id, lease_token FROM pyqueue.claim_batch(ARRAY['work'], 'w1', 4, '30 s')"
        ).fetchall()
        assert len(claimed) == 4
        (a, ta), (b, tb), (c, tc), (d, td) = claimed
        held = conn.execute(
            "SELECT * FROM pyqueue.heartbeat(%s, %s, '60 s')", [[a, b, c, d], [ta, tb, tc, td]]
        ).fetchall()
        assert sorted(r[0] for r in held) == sorted([a, b, c, d])
        assert conn.execute(
            "SELECT pyqueue.report_progress(%s, %s, 50, 'half')", [a, ta]
        ).fetchone() == (True,)
        assert conn.execute(
            "SELECT pyqueue.complete(%s, %s, '{\"ok\": 1}')", [a, ta]
        ).fetchone() == (True,)
        assert conn.execute(
            "SELECT * FROM pyqueue.complete_batch(%s, %s)", [[b], [tb]]
        ).fetchall() == [(b,)]
        assert conn.execute("SELECT pyqueue.fail(%s, %s, 'boom')", [c, tc]).fetchone() == (
            "pending",
        )
        assert conn.execute("SELECT * FROM pyqueue.release(%s, %s)", [[d], [td]]).fetchall() == [
            (d,)
        ]
        assert conn.execute("SELECT pyqueue.recover_expired()").fetchone() == (0,)
        assert conn.execute("SELECT status FROM pyqueue.get_job(%s)", [a]).fetchone() == (
            "completed",
        )
        assert conn.execute("SELECT pyqueue.schema_version()").fetchone() == (
            pyqueue.SCHEMA_VERSION,
        )
    statuses = dict(db.execute("SELECT id, status FROM pyqueue.jobs").fetchall())
    assert statuses == {a: "completed", b: "completed", c: "pending", d: "pending"}


def test_monitor_and_operator_read_every_view(db, logins):
    db.execute("SELECT pyqueue.enqueue('emails', '{}')")
    db.execute("SELECT pyqueue.claim_batch(ARRAY['emails'], 'w', 1, '30 s')")
    views = {
        r[0]
        for r in db.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = 'pyqueue'::regnamespace"
            " AND relkind = 'v' AND relname <> 'all_jobs'"
        )
    }
    assert views == MONITOR_VIEWS | SHARED_VIEWS
    for role in ("pyqueue_monitor", "pyqueue_operator"):
        with connect(logins[role]) as conn:
            for view in sorted(MONITOR_VIEWS):
                conn.execute(f"SELECT * FROM pyqueue.{view}").fetchall()
            stats = conn.execute("SELECT queue, running FROM pyqueue.queue_stats").fetchall()
            assert stats == [("emails", 1)]
            assert len(conn.execute("SELECT * FROM pyqueue.running_jobs").fetchall()) == 1


def test_the_python_worker_runs_as_the_worker_role(db, logins):
    # The whole runner (schema check, LISTEN, claim, heartbeat, recovery,
    # complete, fail) needs nothing beyond pyqueue_worker; the client nothing
    # beyond pyqueue_producer to enqueue and wait.
    worker = pyqueue.Worker(poll_interval=0.05, lease=3.0)

    @worker.handler("roles")
    def handle(payload, job):
        if payload.get("fail"):
            raise RuntimeError("refused on purpose")
        return {"doubled": payload["n"] * 2}

    failures: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(logins["pyqueue_worker"], install_signal_handlers=False)
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=run, name="roles-worker")
    thread.start()
    try:
        with pyqueue.Queue(logins["pyqueue_producer"]) as q:
            good = q.enqueue("roles", {"n": 21})
            bad = q.enqueue("roles", {"fail": True}, max_attempts=1)
            done, dead = q.wait(good, timeout=30), q.wait(bad, timeout=30)
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive(), "the worker did not stop within 30 s of stop()"
    assert not failures, failures
    assert (done.status, done.result) == ("completed", {"doubled": 42})
    assert (dead.status, dead.error) == ("dead", "refused on purpose")
