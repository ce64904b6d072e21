"""Queue-level permissions (issue 25, sql/03_permissions.sql), as real login roles.

A role with queue grants may act only on the queues they match, each action
(enqueue, work, read) granted apart; a role with none acts on every queue.
Each test connects as LOGIN roles of its own (helpers.login_role) and checks
what is refused (SQLSTATE 42501, naming the queue and the action) and what
still works, from SQL and through the Python client.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import errors

import pyqueue
from tests.helpers import claim, enqueue, login_role, scalar, sqlstate_of, writes_nothing

Conn = psycopg.Connection[Any]


def connect(conninfo: str) -> Conn:
    return psycopg.connect(conninfo, autocommit=True)


def refused(conn: Conn, statement: str, params: Any = None, *, queue: str, action: str) -> None:
    """The statement fails with 42501, and the message names the queue and the action."""
    error = sqlstate_of(conn, statement, params)
    assert isinstance(error, errors.InsufficientPrivilege), error
    assert f"may not {action} on queue '{queue}'" in str(error), str(error)


def grant(db: Conn, conninfo: str, pattern: str, actions: list[str]) -> None:
    role = psycopg.conninfo.conninfo_to_dict(conninfo)["user"]
    db.execute("SELECT pyqueue.grant_queues(%s, %s, %s)", [role, pattern, actions])


# ---- the "done when" ---------------------------------------------------


def test_a_producer_granted_a_star_enqueues_and_reads_only_a_queues(db, dsn):
    other = enqueue(db, "b.x", '{"secret": "of b"}')
    mine_before = enqueue(db, "a.y", '{"n": 0}')
    with login_role(db, dsn, "pyqueue_producer") as producer:
        grant(db, producer, "a.*", ["enqueue", "read"])
        with connect(producer) as conn:
            mine = scalar(conn, "SELECT pyqueue.enqueue('a.x', '{\"n\": 1}')")
            with writes_nothing(db):
                refused(conn, "SELECT pyqueue.enqueue('b.x', '{}')", queue="b.x", action="enqueue")
            refused(conn, "SELECT * FROM pyqueue.get_job(%s)", [other], queue="b.x", action="read")
            listed = conn.execute("SELECT id, queue FROM pyqueue.list_jobs()").fetchall()
            assert sorted(listed) == sorted([(mine_before, "a.y"), (mine, "a.x")])
            summaries = conn.execute("SELECT id FROM pyqueue.job_summaries()").fetchall()
            assert sorted(summaries) == sorted([(mine_before,), (mine,)])
            assert conn.execute("SELECT queue FROM pyqueue.get_job(%s)", [mine]).fetchone() == (
                "a.x",
            )
        # The same through the Python client.
        with pyqueue.Queue(producer) as q:
            new = q.enqueue("a.z", {"n": 2})
            assert q.get_job(new).status == "pending"
            assert {j.queue for j in q.list_jobs()} == {"a.x", "a.y", "a.z"}
            with pytest.raises(
                errors.InsufficientPrivilege, match=r"may not enqueue on queue 'b\.x'"
            ):
                q.enqueue("b.x", {})
            with pytest.raises(errors.InsufficientPrivilege, match=r"may not read on queue 'b\.x'"):
                q.get_job(other)
    assert scalar(db, "SELECT count(*) FROM pyqueue.jobs WHERE queue = 'b.x'") == 1


# ---- each action ------------------------------------------------------------------


def test_enqueue_needs_enqueue_and_a_key_needs_read(db, dsn):
    with login_role(db, dsn, "pyqueue_producer") as producer:
        grant(db, producer, "a.*", ["read"])
        grant(db, producer, "w.*", ["enqueue"])
        with connect(producer) as conn:
            refused(conn, "SELECT pyqueue.enqueue('a.x', '{}')", queue="a.x", action="enqueue")
            refused(
                conn,
                "SELECT pyqueue.enqueue_batch('a.x', ARRAY['1']::jsonb[])",
                queue="a.x",
                action="enqueue",
            )
            assert scalar(conn, "SELECT pyqueue.enqueue('w.only', '{}')") > 0
            two = conn.execute("SELECT pyqueue.enqueue_batch('w.only', ARRAY['1', '2']::jsonb[])")
            assert len(two.fetchall()) == 2
            # Another application's key on a queue this role may enqueue to but
            # not read: it would answer with that job's id, so it is refused,
            # held or not (the refusal says nothing about whether it is held).
            held = enqueue(db, "w.only", idempotency_key="their-key")
            with writes_nothing(db):
                for key in ("their-key", "free-key"):
                    refused(
                        conn,
                        "SELECT pyqueue.enqueue('w.only', '{}', idempotency_key => %s)",
                        [key],
                        queue="w.only",
                        action="read",
                    )
                    refused(
                        conn,
                        "SELECT pyqueue.enqueue_batch('w.only', ARRAY['1']::jsonb[],"
                        " idempotency_keys => ARRAY[%s])",
                        [key],
                        queue="w.only",
                        action="read",
                    )
        grant(db, producer, "w.only", ["read"])
        with connect(producer) as conn:
            # With read, keys work as ever: the held key matches its job.
            assert (
                scalar(
                    conn, "SELECT pyqueue.enqueue('w.only', '{}', idempotency_key => 'their-key')"
                )
                == held
            )
            assert conn.execute(
                "SELECT * FROM pyqueue.enqueue_batch('w.only', ARRAY['1']::jsonb[],"
                " idempotency_keys => ARRAY['their-key'])"
            ).fetchall() == [(held,)]


def test_work_covers_the_claim_and_everything_a_lease_allows(db, dsn):
    mine = [enqueue(db, "a.work") for _ in range(5)]
    theirs = enqueue(db, "b.work")
    with login_role(db, dsn, "pyqueue_worker") as worker:
        grant(db, worker, "a.*", ["work", "read"])
        with connect(worker) as conn:
            with writes_nothing(db):
                refused(
                    conn,
                    "SELECT * FROM pyqueue.claim_batch(ARRAY['a.work', 'b.work'], 'w', 10)",
                    queue="b.work",
                    action="work",
                )
            held = claim(conn, "a.work", 5)
            assert sorted(c.id for c in held) == mine
            (a, b, c, d, e) = held
            assert scalar(conn, "SELECT pyqueue.report_progress(%s, %s, 5)", [a.id, a.lease_token])
            assert sorted(conn.execute(
                "SELECT * FROM pyqueue.heartbeat(%s, %s)",
                [[a.id, b.id], [a.lease_token, b.lease_token]],
            ).fetchall()) == sorted([(a.id,), (b.id,)])  # fmt: skip
            assert scalar(conn, "SELECT pyqueue.complete(%s, %s)", [a.id, a.lease_token])
            assert conn.execute(
                "SELECT * FROM pyqueue.complete_batch(%s, %s)", [[b.id], [b.lease_token]]
            ).fetchall() == [(b.id,)]
            assert scalar(conn, "SELECT pyqueue.fail(%s, %s, 'x')", [c.id, c.lease_token]) == (
                "pending"
            )
            assert conn.execute(
                "SELECT * FROM pyqueue.release(%s, %s)", [[d.id], [d.lease_token]]
            ).fetchall() == [(d.id,)]
        # Ids of other queues' jobs, without their lease, learn nothing: lost.
        with connect(worker) as conn:
            assert (
                conn.execute(
                    "SELECT * FROM pyqueue.complete_batch(%s, %s)", [[theirs], [e.lease_token]]
                ).fetchall()
                == []
            )
        # A lease held when the grant went: every lease call is refused.
        grant(db, worker, "z.other", ["read"])
        db.execute("SELECT pyqueue.revoke_queues(%s, 'a.*')",
                   [psycopg.conninfo.conninfo_to_dict(worker)["user"]])  # fmt: skip
        with connect(worker) as conn:
            token = e.lease_token
            with writes_nothing(db):
                for statement, params in [
                    ("SELECT pyqueue.complete(%s, %s)", [e.id, token]),
                    ("SELECT * FROM pyqueue.complete_batch(%s, %s)", [[e.id], [token]]),
                    ("SELECT pyqueue.fail(%s, %s, 'x')", [e.id, token]),
                    ("SELECT * FROM pyqueue.fail_batch(%s, %s, %s)", [[e.id], [token], ["x"]]),
                    ("SELECT * FROM pyqueue.heartbeat(%s, %s)", [[e.id], [token]]),
                    ("SELECT pyqueue.report_progress(%s, %s, 1)", [e.id, token]),
                    ("SELECT * FROM pyqueue.release(%s, %s)", [[e.id], [token]]),
                ]:
                    refused(conn, statement, params, queue="a.work", action="work")


def test_read_covers_get_list_and_wait(db, dsn):
    done = enqueue(db, "r.ok")
    token = claim(db, "r.ok")[0].lease_token
    db.execute("SELECT pyqueue.complete(%s, %s, '{\"v\": 1}')", [done, token])
    hidden = enqueue(db, "s.hidden")
    with login_role(db, dsn, "pyqueue_producer") as reader:
        grant(db, reader, "r.ok", ["read"])
        with connect(reader) as conn:
            assert [r[0] for r in conn.execute("SELECT id FROM pyqueue.list_jobs()")] == [done]
            assert (
                conn.execute("SELECT id FROM pyqueue.list_jobs(queue => 's.hidden')").fetchall()
                == []
            )
            hidden_rows = conn.execute("SELECT id FROM pyqueue.job_summaries(queue => 's.hidden')")
            assert hidden_rows.fetchall() == []
            refused(conn, "SELECT pyqueue.get_job(%s)", [hidden], queue="s.hidden", action="read")
        with pyqueue.Queue(reader) as q:
            assert q.wait(done, timeout=5).result == {"v": 1}
            with pytest.raises(errors.InsufficientPrivilege):
                q.wait(hidden, timeout=5)


def test_operator_actions_check_the_queue(db, dsn):
    pending = enqueue(db, "b.ops")
    dead = enqueue(db, "b.ops", max_attempts=1)
    db.execute("UPDATE pyqueue.jobs SET priority = -1 WHERE id = %s", [pending])
    (c,) = claim(db, "b.ops")
    assert c.id == dead
    db.execute("SELECT pyqueue.fail(%s, %s, 'x')", [dead, c.lease_token])
    with login_role(db, dsn, "pyqueue_operator") as operator:
        grant(db, operator, "a.*", ["work", "enqueue", "read"])
        with connect(operator) as conn, writes_nothing(db):
            refused(conn, "SELECT pyqueue.cancel(%s)", [pending], queue="b.ops", action="work")
            refused(conn, "SELECT pyqueue.retry_dead(%s)", [dead], queue="b.ops", action="enqueue")
            refused(
                conn, "SELECT pyqueue.configure_queue('b.ops', 5)", queue="b.ops", action="work"
            )
            # '*' sets every queue's defaults: only a grant on '*' allows it.
            refused(conn, "SELECT pyqueue.configure_queue('*', 5)", queue="*", action="work")
        grant(db, operator, "b.*", ["work", "enqueue"])
        with connect(operator) as conn:
            assert scalar(conn, "SELECT pyqueue.cancel(%s)", [pending]) is True
            assert scalar(conn, "SELECT pyqueue.retry_dead(%s)", [dead]) > dead


# ---- whose grants -------------------------------------------------------------------


def test_set_role_neither_sheds_nor_escapes_grants(db, dsn):
    hidden = enqueue(db, "b.x")
    with (
        login_role(db, dsn, "pyqueue_producer") as tenant_a,
        login_role(db, dsn, "pyqueue_producer") as pooler,
    ):
        a_name = psycopg.conninfo.conninfo_to_dict(tenant_a)["user"]
        pooler_name = psycopg.conninfo.conninfo_to_dict(pooler)["user"]
        grant(db, tenant_a, "a.*", ["enqueue", "read"])
        db.execute(f"GRANT {a_name} TO {pooler_name}")
        with connect(tenant_a) as conn:
            # pyqueue_producer holds no grants, but the login still does.
            conn.execute("SET ROLE pyqueue_producer")
            refused(conn, "SELECT pyqueue.enqueue('b.x', '{}')", queue="b.x", action="enqueue")
            refused(conn, "SELECT pyqueue.get_job(%s)", [hidden], queue="b.x", action="read")
        with connect(pooler) as conn:
            # An unrestricted login acting as a tenant is held to the tenant's grants.
            assert scalar(conn, "SELECT pyqueue.enqueue('b.x', '{}')") > 0
            conn.execute(f"SET ROLE {a_name}")
            refused(conn, "SELECT pyqueue.enqueue('b.x', '{}')", queue="b.x", action="enqueue")
            assert scalar(conn, "SELECT pyqueue.enqueue('a.x', '{}')") > 0
            conn.execute("RESET ROLE")
            assert scalar(conn, "SELECT pyqueue.enqueue('b.x', '{}')") > 0


def test_a_role_without_grants_acts_on_every_queue(db, dsn):
    with login_role(db, dsn, "pyqueue_producer", "pyqueue_worker") as app, connect(app) as conn:
        for queue in ("a.x", "b.x", "anything"):
            job_id = scalar(conn, "SELECT pyqueue.enqueue(%s, '{}', idempotency_key => 'k')",
                            [queue])  # fmt: skip
            assert scalar(conn, "SELECT queue FROM pyqueue.get_job(%s)", [job_id]) == queue
        assert len(conn.execute("SELECT * FROM pyqueue.list_jobs()").fetchall()) == 3
        assert len(claim(conn, "b.x")) == 1


# ---- granting and revoking ---------------------------------------------------------


def test_grant_and_revoke(db, dsn):
    with login_role(db, dsn, "pyqueue_producer") as app:
        name = psycopg.conninfo.conninfo_to_dict(app)["user"]
        assert scalar(db, "SELECT pyqueue.grant_queues(%s, 'a.*', '{read}')", [name]) == ["read"]
        assert scalar(db, "SELECT pyqueue.grant_queues(%s, 'a.*', '{enqueue,read}')",
                      [name]) == ["enqueue", "read"]  # fmt: skip
        # A second grant on a pattern adds its actions to those already granted.
        assert scalar(db, "SELECT pyqueue.grant_queues(%s, 'c', '{work}')", [name]) == ["work"]
        assert scalar(db, "SELECT pyqueue.grant_queues(%s, 'c', '{read}')",
                      [name]) == ["read", "work"]  # fmt: skip
        assert scalar(db, "SELECT pyqueue.revoke_queues(%s, 'c')", [name]) is True
        assert scalar(db, "SELECT pyqueue.revoke_queues(%s, 'c')", [name]) is False
        # The last grant: removing it would let the role act on every queue.
        error = sqlstate_of(db, "SELECT pyqueue.revoke_queues(%s, 'a.*')", [name])
        assert error.sqlstate == "55000" and "last queue grant" in str(error)
        with connect(app) as conn:
            refused(conn, "SELECT pyqueue.enqueue('b', '{}')", queue="b", action="enqueue")
        assert scalar(db, "SELECT pyqueue.revoke_queues(%s, NULL)", [name]) is True
        with connect(app) as conn:
            assert scalar(conn, "SELECT pyqueue.enqueue('b', '{}')") > 0


@pytest.mark.parametrize(
    ("call", "sqlstate", "words"),
    [
        ("SELECT pyqueue.grant_queues('no_such_role_x', 'a', '{read}')", "42704", "no role"),
        ("SELECT pyqueue.grant_queues(NULL, 'a', '{read}')", "42704", "no role"),
        ("SELECT pyqueue.grant_queues(current_user, 'a b', '{read}')", "22023", "pattern"),
        ("SELECT pyqueue.grant_queues(current_user, 'a*b', '{read}')", "22023", "pattern"),
        ("SELECT pyqueue.grant_queues(current_user, '**', '{read}')", "22023", "pattern"),
        ("SELECT pyqueue.grant_queues(current_user, NULL, '{read}')", "22023", "pattern"),
        ("SELECT pyqueue.grant_queues(current_user, 'a', '{}')", "22023", "actions"),
        ("SELECT pyqueue.grant_queues(current_user, 'a', NULL)", "22023", "actions"),
        ("SELECT pyqueue.grant_queues(current_user, 'a', '{admin}')", "22023", "actions"),
        ("SELECT pyqueue.grant_queues(current_user, 'a', '{read,NULL}')", "22023", "actions"),
    ],
)
def test_bad_grants_are_refused_naming_the_problem(db, call, sqlstate, words):
    with writes_nothing(db):
        error = sqlstate_of(db, call)
    assert error.sqlstate == sqlstate and words in str(error), str(error)
    assert scalar(db, "SELECT count(*) FROM pyqueue.queue_grants") == 0


VALID_PATTERN = re.compile(r"\*|[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}\*?")
# Text that can reach SQL at all: psycopg refuses NUL and lone surrogates itself.
SENDABLE = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=120
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(pattern=st.one_of(SENDABLE, st.from_regex(VALID_PATTERN, fullmatch=True)))
def test_any_pattern_is_stored_as_given_or_refused_naming_it(db, pattern):
    db.execute("DELETE FROM pyqueue.queue_grants")
    call = "SELECT pyqueue.grant_queues(current_user, %s, '{read}')"
    if VALID_PATTERN.fullmatch(pattern) and len(pattern.rstrip("*") or "x") <= 100:
        assert scalar(db, call, [pattern]) == ["read"]
        assert scalar(db, "SELECT pattern FROM pyqueue.queue_grants") == pattern
    else:
        error = sqlstate_of(db, call, [pattern])
        assert error.sqlstate == "22023" and "invalid queue pattern" in str(error), error
        assert scalar(db, "SELECT count(*) FROM pyqueue.queue_grants") == 0
    db.execute("DELETE FROM pyqueue.queue_grants")


def matches(pattern: str, queue: str) -> bool:
    """The model: an exact name, or a prefix ending in '*'."""
    if pattern.endswith("*"):
        return queue.startswith(pattern[:-1])
    return pattern == queue


NAMES = st.from_regex(re.compile(r"[a-c][a-c_.]{0,4}", re.ASCII), fullmatch=True)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    patterns=st.lists(
        st.one_of(NAMES, NAMES.map(lambda n: n + "*"), st.just("*")), min_size=1, max_size=3
    ),
    queue=NAMES,
)
def test_a_queue_is_allowed_exactly_when_a_pattern_matches(db, patterns, queue):
    # Checked as the owner's own session with grants of its own: the owner
    # holds grants like any role ('_' is a letter here, not a wildcard).
    db.execute("DELETE FROM pyqueue.queue_grants")
    for pattern in patterns:
        db.execute("SELECT pyqueue.grant_queues(current_user, %s, '{read}')", [pattern])
    try:
        may = scalar(db, "SELECT pyqueue._may(%s, 'read')", [queue])
        may_enqueue = scalar(db, "SELECT pyqueue._may(%s, 'enqueue')", [queue])
    finally:
        db.execute("DELETE FROM pyqueue.queue_grants")
    assert may == any(matches(p, queue) for p in patterns)
    assert may_enqueue is False


# ---- job summaries: keyset paging without payloads ------------------------------------


def test_job_summaries_page_by_keyset_over_live_and_dead_jobs(db):
    ids = [enqueue(db, "k.q", '{"big": "%s"}' % ("x" * 1000)) for _ in range(7)]
    (c,) = claim(db, "k.q")
    db.execute("UPDATE pyqueue.jobs SET max_attempts = 1 WHERE id = %s", [c.id])
    db.execute("SELECT pyqueue.fail(%s, %s, 'first line\nsecond line')", [c.id, c.lease_token])
    columns = [
        d.name for d in db.execute("SELECT * FROM pyqueue.job_summaries() LIMIT 0").description
    ]
    assert not {"payload", "result", "traceback"} & set(columns)
    seen, before = [], None
    while True:
        page = db.execute(
            "SELECT id, status, error FROM pyqueue.job_summaries(before_id => %s, max_rows => 3)",
            [before],
        ).fetchall()
        if not page:
            break
        seen += page
        before = page[-1][0]
    assert [r[0] for r in seen] == ids[::-1]
    assert (c.id, "dead", "first line") in seen
    listed = db.execute("SELECT id FROM pyqueue.list_jobs(max_rows => 3, before_id => %s)",
                        [ids[4]]).fetchall()  # fmt: skip
    assert listed == [(ids[3],), (ids[2],), (ids[1],)]
    for bad in ("max_rows => 0", "max_rows => 501", "status => 'done'", "queue => 'a b'"):
        assert sqlstate_of(db, f"SELECT * FROM pyqueue.job_summaries({bad})").sqlstate == "22023"


def test_a_deep_page_reads_one_page_of_rows(db):
    # The dashboard's page past 2000 used to read every row before it. A page
    # by keyset reads the rows it shows (and the index entries before them).
    db.execute(
        "INSERT INTO pyqueue.jobs (queue, payload, max_attempts)"
        " SELECT 'deep', jsonb_build_object('pad', repeat('x', 2000)), 3"
        " FROM generate_series(1, 20000)"
    )
    db.execute("ANALYZE pyqueue.jobs")
    plan = scalar(
        db,
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)"
        " SELECT * FROM pyqueue.all_jobs WHERE id < 50 ORDER BY id DESC LIMIT 51",
    )[0]
    assert plan["Plan"]["Actual Rows"] == 49
    assert plan["Plan"]["Shared Hit Blocks"] + plan["Plan"].get("Shared Read Blocks", 0) < 200
    rows = db.execute("SELECT id FROM pyqueue.job_summaries(before_id => 50, max_rows => 500)")
    assert [r[0] for r in rows] == list(range(49, 0, -1))


# ---- max_result_bytes ---------------------------------------------------------------------


def test_a_result_over_its_queues_limit_is_refused_naming_the_job(db):
    assert scalar(db, "SELECT max_result_bytes FROM pyqueue.queue_settings('any')") == 1048576
    db.execute("SELECT pyqueue.configure_queue('small', max_result_bytes => 100)")
    assert scalar(db, "SELECT max_result_bytes FROM pyqueue.queue_settings('small')") == 100
    enqueue(db, "small")
    enqueue(db, "small")
    a, b = claim(db, "small", 2)
    big = '{"v": "%s"}' % ("x" * 200)
    with writes_nothing(db):
        error = sqlstate_of(
            db,
            "SELECT * FROM pyqueue.complete_batch(%s, %s, %s::jsonb[])",
            [[a.id, b.id], [a.lease_token, b.lease_token], ['{"ok": 1}', big]],
        )
        assert error.sqlstate == "22023"
        assert f"result of job {b.id} is" in str(error) and "limit of queue 'small'" in str(error)
        error = sqlstate_of(db, "SELECT pyqueue.complete(%s, %s, %s)", [b.id, b.lease_token, big])
        assert error.sqlstate == "22023"
    assert scalar(db, "SELECT pyqueue.complete(%s, %s, '{\"ok\": 1}')", [a.id, a.lease_token])
    for bad in ("0", "268435457"):
        error = sqlstate_of(
            db, f"SELECT pyqueue.configure_queue('small', max_result_bytes => {bad})"
        )
        assert error.sqlstate == "22023" and "max_result_bytes" in str(error)


def test_the_python_worker_fails_a_job_whose_result_is_too_large(db, dsn):
    worker = pyqueue.Worker(poll_interval=0.05)

    @worker.handler("results")
    def handle(payload, job):
        return {"v": "x" * payload["n"]}

    with pyqueue.Queue(dsn) as q:
        q.configure_queue("results", max_result_bytes=200)
        small = q.enqueue("results", {"n": 10})
        large = q.enqueue("results", {"n": 500}, max_attempts=1)
        thread = threading.Thread(
            target=worker.run, args=(dsn,), kwargs={"install_signal_handlers": False}
        )
        thread.start()
        try:
            done, dead = q.wait(small, timeout=30), q.wait(large, timeout=30)
        finally:
            worker.stop()
            thread.join(30)
    assert done.status == "completed"
    assert dead.status == "dead" and "over the limit of queue 'results'" in (dead.error or "")


def test_the_cli_runs_as_an_operator_login(db, dsn):
    from click.testing import CliRunner

    from pyqueue.cli import main

    pending = enqueue(db, "cli.q")
    dead = enqueue(db, "cli.q", max_attempts=1)
    db.execute("UPDATE pyqueue.jobs SET priority = 1 WHERE id = %s", [dead])
    (c,) = claim(db, "cli.q")
    db.execute("SELECT pyqueue.fail(%s, %s, 'boom')", [c.id, c.lease_token])
    with login_role(db, dsn, "pyqueue_operator") as operator:
        runner = CliRunner()
        for args in (
            ["status"],
            ["jobs", "--queue", "cli.q"],
            ["job", str(pending)],
            ["dead"],
            ["retry", str(dead)],
            ["cancel", str(pending)],
        ):
            result = runner.invoke(main, args, env={"DATABASE_URL": operator})
            assert result.exit_code == 0, (args, result.output)
        refused_purge = runner.invoke(main, ["purge"], env={"DATABASE_URL": operator})
        assert refused_purge.exit_code != 0
    assert scalar(db, "SELECT status FROM pyqueue.jobs WHERE id = %s", [pending]) == "cancelled"


def test_maintain_fires_only_the_schedules_a_restricted_worker_may_enqueue(db, dsn):
    for name, queue in (("mine", "a.cron"), ("theirs", "b.cron")):
        db.execute("SELECT pyqueue.schedule(%s, '* * * * *', %s)", [name, queue])
    db.execute("UPDATE pyqueue.cron_schedules SET next_run_at = now() - interval '1 minute'")
    with login_role(db, dsn, "pyqueue_worker") as worker:
        grant(db, worker, "a.*", ["work", "enqueue"])
        with connect(worker) as conn:
            assert scalar(conn, "SELECT pyqueue.maintain()")["fired"] == 1
    assert db.execute("SELECT queue FROM pyqueue.jobs").fetchall() == [("a.cron",)]
    assert scalar(db, "SELECT pyqueue.maintain()")["fired"] == 1
    assert scalar(db, "SELECT count(*) FROM pyqueue.jobs WHERE queue = 'b.cron'") == 1
