"""Upgrades: each release's database to the newest schema, the compatibility rule, rollbacks.

A release's database is the one its migrations alone build (migrations/history.toml
lists them), since a migration never changes once it has landed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pyqueue
from pyqueue import schema
from pyqueue.schema import Compatibility, refusal
from tests.helpers import claim_one, complete, enqueue, fail, scalar, status, wait_until
from tests.schemas import (
    ROOT,
    Release,
    catalog,
    new_database,
    release_code,
    releases,
    schema_dump,
    table_rows,
)
from tests.test_worker_processes import WorkerProcess
from tests.workers_for_tests import LEDGER_DDL

MIGRATIONS = [m.id for m in schema.migrations()]


def migrations_of(ids: list[str]) -> Any:
    return schema.migrations().filter(lambda m: m.id in ids)


def fill_every_state(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """A job in every state, through the SQL API that schema version 1 already had.

    Each state has a queue of its own, so that a claim takes the job meant.
    """
    jobs: dict[str, Any] = {
        "pending": enqueue(conn, "kept.pending", '{"n": 1}', priority=5, idempotency_key="k1"),
        "scheduled": enqueue(conn, "kept.scheduled", '{"n": 2}', delay="1 hour"),
        "retrying": enqueue(conn, "kept.retrying", '{"n": 3}'),
        "running": enqueue(conn, "kept.running", '{"n": 4}'),
        "completed": enqueue(conn, "kept.completed", '{"n": 5}'),
        "cancelled": enqueue(conn, "kept.cancelled", '{"n": 6}'),
        "dead": enqueue(conn, "kept.dead", '{"n": 7}', max_attempts=1),
        "replayed": enqueue(conn, "kept.replayed", '{"n": 8}', max_attempts=1),
    }
    retrying = claim_one(conn, "kept.retrying")
    assert fail(conn, retrying.id, retrying.lease_token, "flaky") == "pending"
    jobs["lease"] = claim_one(conn, "kept.running", lease="1 hour").lease_token
    done = claim_one(conn, "kept.completed")
    assert complete(conn, done.id, done.lease_token, '{"total": 42}')
    assert scalar(conn, "SELECT pyqueue.cancel(%s)", [jobs["cancelled"]])
    for name in ("dead", "replayed"):
        claimed = claim_one(conn, f"kept.{name}")
        assert fail(conn, claimed.id, claimed.lease_token, f"{name} for good") == "dead"
    jobs["replay"] = scalar(conn, "SELECT pyqueue.retry_dead(%s)", [jobs["replayed"]])
    return jobs


def kept_rows(conn: psycopg.Connection[Any]) -> dict[str, list[dict[str, Any]]]:
    return {table: table_rows(conn, table) for table in ("jobs", "dead_jobs")}


def as_before(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows after an upgrade, reduced to the columns they had before it."""
    return [{column: new[column] for column in old} for old, new in zip(before, after, strict=True)]


@pytest.mark.slow
@pytest.mark.parametrize("release", releases(), ids=lambda r: r.version)
def test_an_upgrade_under_the_releases_running_worker_keeps_every_job(
    dsn, tmp_path, release: Release
):
    with new_database(dsn) as database:
        assert pyqueue.migrate(database, migrations_of(release.migrations)) == len(
            release.migrations
        )
        with psycopg.connect(database, autocommit=True) as conn:
            assert scalar(conn, "SELECT pyqueue.schema_version()") == release.schema_version
            jobs = fill_every_state(conn)
            before = kept_rows(conn)
            conn.execute(LEDGER_DDL)
            live = [enqueue(conn, "ledger", '{"sleep": 0.01}') for _ in range(300)]

            # The release's own worker, as a fleet of that release runs it.
            worker = ReleaseWorker(release, database, tmp_path)
            try:
                wait_until(
                    lambda: scalar(conn, "SELECT count(*) FROM ledger") > 0,
                    60,
                    "the old worker to start jobs",
                    worker.output,
                )
                migrated = subprocess.run(
                    [sys.executable, "-m", "pyqueue.cli", "--database-url", database, "migrate"],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                assert migrated.returncode == 0, migrated.stderr
                newest = pyqueue.SCHEMA_VERSION
                assert f"schema version {newest}" in migrated.stdout
                live += [enqueue(conn, "ledger", '{"sleep": 0.01}') for _ in range(100)]
                wait_until(lambda: all_completed(conn, live), 60, "every live job", worker.output)
            finally:
                worker.signal(signal.SIGTERM)
                exited = worker.wait(30)
                worker.kill()
            assert exited == 0, worker.output()

            # The release's worker ran through the upgrade: every job once, none lost.
            assert scalar(conn, "SELECT count(*) FROM ledger WHERE event = 'end'") == len(live)
            assert scalar(conn, "SELECT count(DISTINCT job_id) FROM ledger") == len(live)
            conn.execute("DELETE FROM pyqueue.jobs WHERE queue = 'ledger'")

            # Every kept job as it was: id, state, payload, attempts, result, error...
            after = kept_rows(conn)
            for table in before:
                assert as_before(before[table], after[table]) == before[table]
            assert status(conn, jobs["retrying"]) == "pending"
            assert status(conn, jobs["replay"]) == "pending"
            # ...and the job running under a lease is still its claimant's to finish.
            assert complete(conn, jobs["running"], jobs["lease"], '{"after": "upgrade"}')
            assert status(conn, jobs["running"]) == "completed"


class ReleaseWorker(WorkerProcess):
    """`pyqueue worker tests.workers_for_tests:worker` run by a release's own code."""

    def __init__(self, release: Release, dsn: str, folder: Path) -> None:
        code = release_code(release, folder / release.version)
        # -P: not the current directory first on sys.path, so pyqueue comes from
        # the release's tree; the test worker module from this checkout.
        python = [sys.executable, "-P"]
        env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{ROOT}", "PYQUEUE_TEST_DSN": dsn}
        probe = "import pyqueue; print(pyqueue.__file__, pyqueue.SCHEMA_VERSION)"
        found = subprocess.run(
            [*python, "-c", probe], env=env, cwd=folder, capture_output=True, text=True, check=True
        ).stdout.split()
        assert found == [str(code / "pyqueue" / "__init__.py"), str(release.schema_version)]

        self.log = folder / "release-worker.log"
        command = [*python, "-m", "pyqueue.cli", "--database-url", dsn, "worker",
                   "tests.workers_for_tests:worker"]  # fmt: skip
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                command, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT
            )


def all_completed(conn: psycopg.Connection[Any], ids: list[int]) -> bool:
    found = scalar(
        conn,
        "SELECT count(*) FROM pyqueue.jobs WHERE id = ANY(%s) AND status = 'completed'",
        [ids],
    )
    return bool(found == len(ids))


@pytest.mark.parametrize("migration", MIGRATIONS[1:])
def test_each_rollback_restores_the_schema_before_it(dsn, migration: str):
    earlier = MIGRATIONS[: MIGRATIONS.index(migration)]
    with new_database(dsn) as rolled_back, new_database(dsn) as built:
        pyqueue.migrate(rolled_back, migrations_of([*earlier, migration]))
        schema.rollback(rolled_back, migrations_of([migration]))
        pyqueue.migrate(built, migrations_of(earlier))
        assert schema_dump(rolled_back) == schema_dump(built)
        assert catalog(rolled_back) == catalog(built)


def test_the_schema_says_what_it_serves_through_sql(db):
    found = db.execute("SELECT * FROM pyqueue.schema_compatibility()").fetchone()
    assert found == (pyqueue.SCHEMA_VERSION, 1)
    assert schema.compatibility(db) == Compatibility(pyqueue.SCHEMA_VERSION, 1)
    schema.check_version(db)


def test_a_schema_of_version_1_reads_as_serving_its_own_clients(dsn):
    with new_database(dsn) as database:
        pyqueue.migrate(database, migrations_of(releases()[0].migrations))
        with psycopg.connect(database, autocommit=True) as conn:
            assert schema.compatibility(conn) == Compatibility(1, 1)
            if schema.OLDEST_SCHEMA > 1:
                with pytest.raises(pyqueue.SchemaError, match="run `pyqueue migrate`"):
                    schema.check_version(conn)
            else:
                schema.check_version(conn)


versions = st.integers(min_value=1, max_value=50)


@given(version=versions, oldest_client=versions, written_for=versions, oldest_usable=versions)
def test_a_client_is_refused_only_when_it_cannot_work_and_is_told_which_side_to_upgrade(
    version, oldest_client, written_for, oldest_usable
):
    reason = refusal(Compatibility(version, oldest_client), written_for, oldest_usable)
    if version < oldest_usable:
        assert reason is not None
        assert reason.endswith("run `pyqueue migrate`")
        assert f"schema version {version}, older than this client can use" in reason
    elif written_for < oldest_client:
        assert reason is not None
        assert reason.endswith("upgrade pyqueue")
        assert f"written for schema version {oldest_client} or newer" in reason
    else:
        assert reason is None


def test_a_missing_schema_is_refused_with_the_command_that_installs_it():
    assert refusal(None) == "the pyqueue schema is not installed here: run `pyqueue migrate`"


def test_migrate_refuses_a_server_older_than_pyqueue_supports(dsn, monkeypatch):
    with psycopg.connect(dsn) as conn:
        running = conn.info.parameter_status("server_version")
    # A real server, judged against a minimum above it: the refusal names both.
    monkeypatch.setattr(schema, "MIN_SERVER_VERSION", 990000)
    with pytest.raises(pyqueue.SchemaError) as refused:
        pyqueue.migrate(dsn)
    assert str(refused.value) == (
        f"this PostgreSQL server is version {running}; pyqueue needs PostgreSQL 99 or newer"
    )


def test_migrate_on_the_command_line_refuses_an_old_server_in_one_line(dsn):
    script = (
        "import sys, pyqueue.schema, pyqueue.cli\n"
        "pyqueue.schema.MIN_SERVER_VERSION = 990000\n"
        "sys.argv = ['pyqueue', '--database-url', sys.argv[1], 'migrate']\n"
        "pyqueue.cli.main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, dsn],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=Path(ROOT),
    )
    assert done.returncode == 1
    assert "pyqueue needs PostgreSQL 99 or newer" in done.stderr
    assert "Traceback" not in done.stderr
