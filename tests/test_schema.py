"""Migrations: forward, again, back; the same schema as sql/; carried by the wheel."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import pyqueue
from pyqueue.schema import check_version, installed_version
from tests.helpers import psql_conninfo, scalar
from tests.schemas import catalog, new_database, schema_dump

ROOT = Path(__file__).resolve().parent.parent
SQL_FILES = sorted((ROOT / "sql").glob("[0-9]*.sql"))
MIGRATION_FILES = sorted((ROOT / "migrations").glob("*.sql"))
MIGRATIONS = [p for p in MIGRATION_FILES if not p.name.endswith(".rollback.sql")]


@pytest.fixture
def empty_database(dsn) -> Iterator[str]:
    with new_database(dsn) as database:
        yield database


def test_migrate_applies_once_and_rolls_back_to_nothing(empty_database):
    assert pyqueue.migrate(empty_database) == len(MIGRATIONS)
    with psycopg.connect(empty_database, autocommit=True) as conn:
        assert scalar(conn, "SELECT pyqueue.schema_version()") == pyqueue.SCHEMA_VERSION
        check_version(conn)
        job_id = scalar(conn, "SELECT pyqueue.enqueue('q', '{}')")
    before = catalog(empty_database)

    # Again: nothing to apply, nothing changed, the data kept.
    assert pyqueue.migrate(empty_database) == 0
    assert catalog(empty_database) == before
    with psycopg.connect(empty_database, autocommit=True) as conn:
        assert scalar(conn, "SELECT id FROM pyqueue.jobs") == job_id

    # Back: no pyqueue schema left; the client then says so clearly.
    assert pyqueue.rollback_all(empty_database) == len(MIGRATIONS)
    with psycopg.connect(empty_database, autocommit=True) as conn:
        assert scalar(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'pyqueue'") == 0
        assert installed_version(conn) is None
        with pytest.raises(pyqueue.SchemaError, match="not installed"):
            check_version(conn)
    # The roles are shared by the cluster, and other test databases still use them:
    # the rollback keeps them rather than failing.

    # And forward again, from nothing.
    assert pyqueue.migrate(empty_database) == len(MIGRATIONS)
    assert catalog(empty_database) == before
    with psycopg.connect(empty_database, autocommit=True) as conn:
        assert scalar(conn, "SELECT count(*) FROM pyqueue.jobs") == 0


@pytest.mark.parametrize(
    ("change", "constraint"),
    [
        ("status = 'finished'", '"job_status_check"'),  # the status domain's check
        ("lease_token = NULL", '"jobs_check1"'),  # running iff a lease token is held
        ("attempt = max_attempts + 1", '"jobs_check"'),  # attempts within max_attempts
    ],
)
def test_the_table_itself_refuses_a_job_that_breaks_the_state_machine(db, change, constraint):
    # Written past the functions, as only the schema's owner can: the invariants
    # that claim and complete rely on hold in the database all the same.
    job_id = scalar(db, "SELECT pyqueue.enqueue('invariants', '{}')")
    scalar(db, "SELECT count(*) FROM pyqueue.claim_batch('{invariants}', 'test', 1)")
    with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
        db.execute(f"UPDATE pyqueue.jobs SET {change} WHERE id = %s", [job_id])
    assert scalar(db, "SELECT status FROM pyqueue.jobs WHERE id = %s", [job_id]) == "running"


def test_migrations_build_the_same_schema_as_the_sql_files(dsn, db, empty_database):
    """The migration chain and a psql run of sql/[0-9]*.sql in order must not drift apart."""
    for path in SQL_FILES:
        done = subprocess.run(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", psql_conninfo(empty_database)],
            stdin=path.open(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{path.name}: {done.stderr}"
    from_sql, from_migrations = schema_dump(empty_database), schema_dump(dsn)
    assert "CREATE FUNCTION pyqueue.claim_batch" in from_migrations
    assert from_sql == from_migrations
    assert catalog(empty_database) == catalog(dsn)


def test_the_migrations_carry_the_sql_files_as_they_stand():
    """`make migration` was run after the last edit of sql/ (the cheap form of the drift test)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "migration.py"), "check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _build_wheel(out: Path) -> Path:
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)]
    if importlib.util.find_spec("hatchling") is not None:
        command.insert(4, "--no-build-isolation")  # offline and fast
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("pyqueue-*.whl")
    return wheel


def test_the_wheel_carries_sql_and_migrations_and_migrates_from_anywhere(tmp_path, empty_database):
    wheel = _build_wheel(tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for folder, files in (("sql", SQL_FILES), ("migrations", MIGRATION_FILES)):
            for path in files:
                member = f"pyqueue/_data/{folder}/{path.name}"
                assert member in names, f"{member} missing from {wheel.name}"
                assert archive.read(member) == path.read_bytes()
        assert "pyqueue/_data/migrations/0001.initial.sql" in names
        archive.extractall(tmp_path / "site")

    # The unpacked wheel, imported from another directory, finds its own data
    # and brings an empty database to the current schema.
    script = (
        "import sys, pyqueue, pyqueue.schema as s\n"
        "print(pyqueue.__file__)\n"
        "print(s.shipped_folder('migrations'))\n"
        "print(pyqueue.migrate(sys.argv[1]))\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    done = subprocess.run(
        [sys.executable, "-c", script, empty_database],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    module, migrations, applied = done.stdout.split()
    assert module.startswith(str(tmp_path / "site"))
    assert migrations == str(tmp_path / "site" / "pyqueue" / "_data" / "migrations")
    assert applied == str(len(MIGRATIONS))
    with psycopg.connect(empty_database, autocommit=True) as conn:
        assert scalar(conn, "SELECT pyqueue.schema_version()") == pyqueue.SCHEMA_VERSION
