"""Rolling deploys with real worker processes, and workers that migrate on start.

Today's release demands no exact schema version, so the rule can be tried both
ways without waiting for a real next release: a test-only migration, written
here on top of the newest, stands for tomorrow's schema (it only adds, as the
rule asks), and PYQUEUE_TEST_CLIENT_SCHEMA makes a worker process tomorrow's
client (see tests/workers_for_tests.py).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest

import pyqueue
from pyqueue import schema
from tests.helpers import scalar, wait_until
from tests.schemas import new_database
from tests.test_worker_processes import WorkerProcess, runs_per_job
from tests.workers_for_tests import LEDGER_DDL

pytestmark = pytest.mark.slow

TODAY = pyqueue.SCHEMA_VERSION
TOMORROW = TODAY + 1

# Tomorrow's migration: a column, an argument added last with a default (under
# the old name, by a new function), every function a worker calls created
# again as a generated migration does, and a version that still serves today's
# clients.
NEXT_RELEASE = f"""
SET LOCAL lock_timeout = '10s';

ALTER TABLE pyqueue.jobs ADD COLUMN next_release_note text;

ALTER FUNCTION pyqueue.release(bigint[], uuid[]) RENAME TO _release_before_{TOMORROW};
REVOKE ALL ON FUNCTION pyqueue._release_before_{TOMORROW}(bigint[], uuid[]) FROM pyqueue_worker;
CREATE FUNCTION pyqueue.release(job_ids bigint[], lease_tokens uuid[], note text DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = pyqueue, pg_temp
AS $$ SELECT pyqueue._release_before_{TOMORROW}(job_ids, lease_tokens) $$;
REVOKE ALL ON FUNCTION pyqueue.release(bigint[], uuid[], text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pyqueue.release(bigint[], uuid[], text) TO pyqueue_worker;

DO $$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'pyqueue'::regnamespace
          AND p.proname IN ('claim_batch', 'complete', 'complete_batch', 'fail', 'heartbeat',
                            'report_progress', 'recover_expired')
    LOOP
        EXECUTE pg_get_functiondef(fn);
    END LOOP;
END;
$$;

CREATE OR REPLACE FUNCTION pyqueue.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pyqueue, pg_temp
AS $$ SELECT {TOMORROW} $$;

CREATE OR REPLACE FUNCTION pyqueue.schema_compatibility(
    OUT version integer, OUT oldest_client_version integer
)
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pyqueue, pg_temp
AS $$ SELECT pyqueue.schema_version(), {TODAY} $$;
"""


def apply_next_release(dsn: str, folder: Path) -> None:
    folder.mkdir()
    (folder / "9999.next_release.sql").write_text(NEXT_RELEASE)
    assert pyqueue.migrate(dsn, schema.migrations(folder)) == 1


@pytest.fixture
def start_worker(dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Start `pyqueue worker` processes; all are killed at the end.

    client="WRITTEN_FOR:OLDEST" makes the process a client of another release
    (TOMORROW is tomorrow's worker, which can still use today's schema).
    """
    started: list[WorkerProcess] = []

    def start(*args: str, client: str | None = None, database: str = dsn) -> WorkerProcess:
        if client is None:
            monkeypatch.delenv("PYQUEUE_TEST_CLIENT_SCHEMA", raising=False)
        else:
            monkeypatch.setenv("PYQUEUE_TEST_CLIENT_SCHEMA", client)
        log = tmp_path / f"worker-{len(started) + 1}.log"
        started.append(WorkerProcess(database, log, *args))
        return started[-1]

    yield start
    for worker in started:
        worker.kill()


TOMORROWS_CLIENT = f"{TOMORROW}:{TODAY}"


ENDED_BY = "SELECT count(DISTINCT job_id) FROM ledger WHERE event = 'end' AND pid = ANY(%s)"
ENQUEUE_MANY = "SELECT count(pyqueue.enqueue('ledger', %s)) FROM generate_series(1, %s)"
COMPLETED = "SELECT count(*) FROM pyqueue.jobs WHERE status = 'completed'"


def completed_by(db: psycopg.Connection[Any], pids: list[int]) -> int:
    """How many jobs the worker processes `pids` ran to the end."""
    return int(scalar(db, ENDED_BY, [pids]))


def test_a_rolling_deploy_loses_nothing_and_runs_nothing_twice(dsn, db, tmp_path, start_worker):
    db.execute(LEDGER_DDL)
    jobs = 1500
    assert scalar(db, ENQUEUE_MANY, ['{"sleep": 0.02}', jobs]) == jobs

    # Today's fleet drains the queue...
    old = [start_worker(), start_worker()]
    old_pids = [w.process.pid for w in old]
    wait_until(lambda: completed_by(db, old_pids) >= 100, 60, "today's workers at work")

    # ...tomorrow's first worker joins before the migration (the rule allows either order)...
    early = start_worker(client=TOMORROWS_CLIENT)
    wait_until(
        lambda: completed_by(db, [early.process.pid]) >= 20,
        60,
        "tomorrow's worker on today's schema",
    )

    # ...the schema is upgraded under them all...
    apply_next_release(dsn, tmp_path / "next")
    assert schema.compatibility(db) == schema.Compatibility(TOMORROW, TODAY)
    done_at_upgrade = completed_by(db, old_pids)

    # ...more of tomorrow's workers join, and today's go on working for a while...
    late = [start_worker(client=TOMORROWS_CLIENT), start_worker(client=TOMORROWS_CLIENT)]
    wait_until(
        lambda: completed_by(db, old_pids) >= done_at_upgrade + 100, 60, "today's workers after"
    )
    wait_until(
        lambda: completed_by(db, [w.process.pid for w in late]) >= 20, 60, "tomorrow's workers"
    )

    # ...then today's get SIGTERM: they finish what they run and hand back the rest.
    for worker in old:
        worker.signal(signal.SIGTERM)
    for worker in old:
        assert worker.wait(30) == 0, worker.output()
    new = [early, *late]
    wait_until(
        lambda: scalar(db, COMPLETED) == jobs,
        60,
        "every job completed",
    )
    for worker in new:
        worker.signal(signal.SIGTERM)
    for worker in new:
        assert worker.wait(30) == 0, worker.output()

    # Each job ran once (a run ends with an 'end' row; none started twice),
    # and nothing is left pending, running or dead.
    runs = runs_per_job(db)
    assert len(runs) == jobs
    assert set(runs.values()) == {(1, 1)}
    assert scalar(db, "SELECT count(*) FROM pyqueue.jobs WHERE attempt <> 1") == 0
    assert scalar(db, "SELECT count(*) FROM pyqueue.dead_jobs") == 0
    assert completed_by(db, [w.process.pid for w in new]) > 0
    assert completed_by(db, old_pids) > done_at_upgrade


def test_clients_the_schema_cannot_serve_refuse_to_start_and_say_which_side_to_upgrade(
    db, start_worker
):
    # A client that needs tomorrow's schema, against today's: migrate first.
    needs_tomorrow = start_worker(client=f"{TOMORROW}:{TOMORROW}")
    assert needs_tomorrow.wait(30) == 1
    assert (
        f"the database has pyqueue schema version {TODAY}, older than this client can use"
        f" ({TOMORROW} or newer): run `pyqueue migrate`"
    ) in needs_tomorrow.output()

    # Today's client, against a schema that no longer serves it: upgrade the client.
    db.execute(
        "CREATE OR REPLACE FUNCTION pyqueue.schema_compatibility(OUT version integer,"
        f" OUT oldest_client_version integer) LANGUAGE sql AS 'SELECT {TOMORROW}, {TOMORROW}'"
    )
    todays = start_worker()
    assert todays.wait(30) == 1
    assert (
        f"pyqueue schema version {TOMORROW}, which serves clients written for schema version"
        f" {TOMORROW} or newer; this client is written for {TODAY}: upgrade pyqueue"
    ) in todays.output()
    assert "Traceback" not in needs_tomorrow.output() + todays.output()


def test_eight_workers_started_at_once_on_an_empty_database_migrate_it_once(
    dsn, tmp_path, start_worker
):
    with new_database(dsn) as empty:
        workers = [start_worker("--migrate", database=empty) for _ in range(8)]
        with psycopg.connect(empty, autocommit=True) as conn:
            wait_until(
                lambda: all("worker " in w.output() and " started" in w.output() for w in workers),
                60,
                "all eight workers started",
            )
            applied = conn.execute(
                "SELECT migration_id, count(*) FROM _yoyo_log WHERE operation = 'apply'"
                " GROUP BY 1 ORDER BY 1"
            ).fetchall()
            assert applied == [(m.id, 1) for m in schema.migrations()]
            conn.execute(LEDGER_DDL)
            assert scalar(conn, ENQUEUE_MANY, ["{}", 200]) == 200
            wait_until(lambda: scalar(conn, COMPLETED) == 200, 60, "jobs done by the eight")
        for worker in workers:
            worker.signal(signal.SIGTERM)
        for worker in workers:
            assert worker.wait(30) == 0, worker.output()
