"""The claim reads the partial index jobs_claim_idx, however many finished jobs there are.

The claim's statements (the pick of the jobs, then the update) are taken from
the installed claim_batch function itself (pg_get_functiondef), so the test
follows the SQL when it changes. The pick is explained with the arguments
written in (a custom plan), as a prepared statement forced to a generic plan
(what claim_batch runs: it forces generic plans), and run once under EXPLAIN
ANALYZE to count the rows read; the update's generic plan must find the picked
jobs by primary key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import psycopg

from tests.helpers import claim, enqueue, scalar

COMPLETED = 100_000
PENDING_LATER = 25_000
DUE = 30


def plan_nodes(plan: Any) -> Iterator[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, subplans and CTEs included."""
    if isinstance(plan, dict):
        if "Node Type" in plan:
            yield plan
        for value in plan.values():
            yield from plan_nodes(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from plan_nodes(item)


def claim_statements(db) -> tuple[str, str]:
    """The two statements of pyqueue.claim_batch: the pick (locking the jobs to
    claim) and the update, with $1..$4 for its arguments, $5 for the ids picked
    and $6 for the claim's lease token."""
    body = scalar(
        db,
        "SELECT pg_get_functiondef("
        "'pyqueue.claim_batch(text[], text, integer, interval, integer)'::regprocedure)",
    )
    found = re.search(
        r"picked := ARRAY\(\s*(.*?)\s*\);.*?RETURN QUERY\s+(.*?);\s*(?:IF |END;)", body, re.DOTALL
    )
    assert found, "claim_batch has no pick and update statements to explain"
    statements = []
    for statement in found.groups():
        for name, number in (("queues", 1), ("worker", 2), ("batch_size", 3), ("lease", 4)):
            statement = statement.replace(f"claim_batch.{name}", f"${number}")
        statement = statement.replace("unnest(queues)", "unnest($1)")
        statement = statement.replace("ANY (picked)", "ANY ($5)")
        statement = statement.replace("claim_token", "$6")
        # No queue with a flow limit (sql/22_flow.sql): the path every claim
        # of an unlimited queue takes.
        statement = statement.replace("allowed[q.ord]", "NULL::integer")
        assert "claim_batch." not in statement and "picked" not in statement
        statements.append(statement)
    # The function's search_path: its statements name tables unqualified.
    return statements[0], statements[1]


def explain(db, query: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    found = scalar(db, f"EXPLAIN (FORMAT JSON) {query}", params)
    return list(plan_nodes(found if not isinstance(found, str) else json.loads(found)))


def buffers_used(conn, query: str, params: list[Any] | None = None) -> int:
    """Shared buffers a statement reads when run (a function call: the SQL run
    inside it included)."""
    found = scalar(conn, f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}", params)
    plan = (found if not isinstance(found, str) else json.loads(found))[0]["Plan"]
    return int(plan["Shared Hit Blocks"] + plan["Shared Read Blocks"])


def assert_reads_the_claim_index(nodes: list[dict[str, Any]]) -> None:
    """The pick reads jobs through the claim index only: the probe for the
    highest priority backwards, from the newest entries (claimed jobs leave dead
    entries at the oldest end until vacuum; only the due-job scan should have to
    walk them), and the due jobs forwards. The probe for each next priority is
    the same scan with one more condition; EXPLAIN does not show it (a SubPlan
    of the recursive CTE's WorkTable Scan)."""
    on_jobs = [n for n in nodes if n.get("Relation Name") == "jobs"]
    assert not any(n["Node Type"] == "Seq Scan" for n in on_jobs), on_jobs
    directions = sorted(
        n["Scan Direction"] for n in on_jobs if n.get("Index Name") == "jobs_claim_idx"
    )
    assert directions == ["Backward", "Forward"], on_jobs


def fill_big_table(db) -> None:
    """Many completed and not-yet-due jobs on other queues, a few due jobs on 'target'."""
    db.execute(
        f"""
        INSERT INTO pyqueue.jobs (queue, status, payload, max_attempts, attempt,
                                  created_at, started_at, finished_at, run_at)
        SELECT 'other-' || (n % 20), 'completed', '{{}}', 3, 1,
               now() - interval '1 day', now() - interval '1 day', now() - (n || ' s')::interval,
               now() - interval '1 day'
        FROM generate_series(1, {COMPLETED}) AS n;
        INSERT INTO pyqueue.jobs (queue, payload, max_attempts, run_at)
        SELECT 'other-' || (n % 20), '{{}}', 3, now() + interval '1 day' + (n || ' s')::interval
        FROM generate_series(1, {PENDING_LATER}) AS n;
        INSERT INTO pyqueue.jobs (queue, payload, max_attempts, priority)
        SELECT 'target', jsonb_build_object('n', n), 3, n % 3
        FROM generate_series(1, {DUE}) AS n;
        """
    )
    db.execute("ANALYZE pyqueue.jobs")


def test_the_claim_reads_the_claim_index_over_a_big_table(db):
    fill_big_table(db)
    pick, update = claim_statements(db)
    db.execute("SET search_path = pyqueue, pg_temp")

    # As a first call plans it: the arguments written in.
    written_in = pick
    for value, literal in (
        ("$1", "ARRAY['target', 'other-3']::text[]"),
        ("$3", "10"),
    ):
        written_in = written_in.replace(value, literal)
    assert_reads_the_claim_index(explain(db, written_in))

    # As claim_batch plans it: one generic plan for any arguments.
    db.execute(f"PREPARE pick_q(text[], text, integer, interval) AS {pick}")
    db.execute(f"PREPARE update_q(text[], text, integer, interval, bigint[], uuid) AS {update}")
    db.execute("SET plan_cache_mode = force_generic_plan")
    assert_reads_the_claim_index(
        explain(db, "EXECUTE pick_q(ARRAY['target'], 'plan-test', 10, '30 seconds')")
    )
    # The update finds the picked jobs by primary key, however many there are.
    for count in (3, 10_000):
        ids = "'{" + ",".join(str(n) for n in range(1, count + 1)) + "}'::bigint[]"
        nodes = explain(
            db, f"EXECUTE update_q(NULL, 'plan-test', 10, '30 seconds', {ids}, gen_random_uuid())"
        )
        scans = [n for n in nodes if n.get("Relation Name") == "jobs" and "Scan" in n["Node Type"]]
        assert [(n["Node Type"], n.get("Index Name")) for n in scans] == [
            ("Index Scan", "jobs_pkey")
        ], scans
    db.execute("RESET plan_cache_mode")

    # Run for real (rolled back): every scan of jobs reads a handful of rows.
    with db.transaction(force_rollback=True):
        analyzed = scalar(db, f"EXPLAIN (ANALYZE, FORMAT JSON) {written_in}")
    scans = [
        n
        for n in plan_nodes(analyzed)
        if n.get("Relation Name") == "jobs" and "Scan" in n["Node Type"]
    ]
    read = sum(n["Actual Rows"] * n["Actual Loops"] for n in scans)
    assert scans and read <= 3 * DUE, scans

    claimed = claim(db, ["target", "other-1"], batch_size=100)
    assert sorted(c.payload["n"] for c in claimed) == list(range(1, DUE + 1))
    assert claim(db, ["other-1", "other-2"], batch_size=100) == []


def test_scheduled_jobs_cost_the_claim_nothing(db):
    """Fewer due jobs than the batch asks for, behind many scheduled ones in the
    same queue and priority: the claim stops at the first job not yet due
    instead of reading through the schedule (counted in buffers, not rows:
    index entries skipped by a condition are not rows)."""
    db.execute(
        f"""
        INSERT INTO pyqueue.jobs (queue, payload, max_attempts, priority, run_at)
        SELECT 'target', '{{}}', 3, n % 2, now() + interval '1 hour' + (n || ' s')::interval
        FROM generate_series(1, {PENDING_LATER}) AS n;
        INSERT INTO pyqueue.jobs (queue, payload, max_attempts, priority)
        SELECT 'target', jsonb_build_object('n', n), 3, n % 2
        FROM generate_series(1, 5) AS n;
        """
    )
    db.execute("ANALYZE pyqueue.jobs")
    statement, _ = claim_statements(db)
    for value, literal in (
        ("$1", "ARRAY['target']::text[]"),
        ("$3", "100"),
    ):
        statement = statement.replace(value, literal)
    db.execute("SET search_path = pyqueue, pg_temp")
    with db.transaction(force_rollback=True):
        buffers = buffers_used(db, statement)
    # A pass over 25,000 index entries would touch well over a hundred pages.
    assert buffers < 100, buffers
    claimed = claim(db, ["target"], batch_size=100)
    assert sorted(c.payload["n"] for c in claimed) == [1, 2, 3, 4, 5]


def test_plans_cached_on_an_empty_table_stay_on_the_indexes_as_it_grows(dsn, db):
    """A worker's session caches the plans of claim_batch, complete_batch and
    recover_expired on its first calls. Made on an empty table (a new queue),
    those plans must not read the whole table once it has grown, before
    autovacuum analyzes it again (turned off here, to hold that moment)."""
    db.execute("ALTER TABLE pyqueue.jobs SET (autovacuum_enabled = false)")
    db.execute("ANALYZE pyqueue.jobs")
    with psycopg.connect(dsn, autocommit=True) as worker:
        # More calls than PostgreSQL makes before it settles on a cached plan.
        for _ in range(8):
            enqueue(db, "fresh")
            [job] = claim(worker, "fresh", batch_size=10)
            scalar(worker, "SELECT pyqueue.complete_batch(%s, %s)", [[job.id], [job.lease_token]])
            scalar(worker, "SELECT pyqueue.recover_expired()")

        db.execute(
            f"""
            INSERT INTO pyqueue.jobs (queue, payload, max_attempts)
            SELECT 'fresh', jsonb_build_object('n', n), 3 FROM generate_series(1, {COMPLETED}) n
            """
        )
        table_pages = scalar(db, "SELECT pg_relation_size('pyqueue.jobs') / 8192")
        assert table_pages > 1000

        claimed = claim(worker, "fresh", batch_size=10)
        used = {
            "claim_batch": buffers_used(
                worker,
                "SELECT * FROM pyqueue.claim_batch(%s, 'w1', 10, '30 seconds')",
                [["fresh"]],
            ),
            "complete_batch": buffers_used(
                worker,
                "SELECT * FROM pyqueue.complete_batch(%s, %s)",
                [[c.id for c in claimed], [c.lease_token for c in claimed]],
            ),
            "recover_expired": buffers_used(worker, "SELECT pyqueue.recover_expired()", []),
        }
    # Index lookups read tens of pages; a scan of the table reads all of them.
    assert all(pages < 200 for pages in used.values()), (used, table_pages)
