"""Databases built by chosen migrations, and what their pyqueue schema holds.

Shared by the schema tests (sql/ against the migrations) and the upgrade tests
(each release's database against the newest).
"""

from __future__ import annotations

import re
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from tests.helpers import psql_conninfo, with_dbname

ROOT = Path(__file__).resolve().parent.parent
HISTORY = ROOT / "migrations" / "history.toml"


@dataclass(frozen=True)
class Release:
    version: str
    commit: str
    schema_version: int
    migrations: list[str]


def releases() -> list[Release]:
    """Every release, oldest first, with the migrations it shipped."""
    with HISTORY.open("rb") as history:
        listed = tomllib.load(history)["release"]
    return [
        Release(r["version"], r["commit"], r["schema_version"], r["migrations"]) for r in listed
    ]


def release_code(release: Release, into: Path) -> Path:
    """The release's own source tree (its pyqueue/, sql/, migrations/), from git history."""
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", release.commit, "pyqueue", "sql", "migrations"],
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, timeout=60, check=True)
    return into


@contextmanager
def new_database(dsn: str) -> Iterator[str]:
    """The DSN of a new, empty database on the server of `dsn`, dropped afterwards."""
    name = f"pyqueue_schema_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield with_dbname(dsn, name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def catalog(conninfo: str) -> dict[str, list[tuple[object, ...]]]:
    """What the pyqueue schema holds, read from the catalogs."""
    queries = {
        "functions": "SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid)"
        " FROM pg_proc p WHERE p.pronamespace = 'pyqueue'::regnamespace ORDER BY 1",
        "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = 'pyqueue' ORDER BY 1, 2",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = 'pyqueue' ORDER BY 1",
        "views": "SELECT viewname, definition FROM pg_views"
        " WHERE schemaname = 'pyqueue' ORDER BY 1",
        "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
        " FROM pg_constraint WHERE connamespace = 'pyqueue'::regnamespace ORDER BY 1, 2",
        "grants": "SELECT routine_name, grantee, privilege_type"
        " FROM information_schema.routine_privileges WHERE routine_schema = 'pyqueue'"
        " UNION ALL SELECT table_name, grantee, privilege_type"
        " FROM information_schema.table_privileges WHERE table_schema = 'pyqueue' ORDER BY 1, 2, 3",
        "settings": "SELECT name, max_attempts, backoff_base, backoff_max, retention,"
        " max_payload_bytes FROM pyqueue.queues ORDER BY 1",
    }
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return {name: conn.execute(query).fetchall() for name, query in queries.items()}


def schema_dump(conninfo: str) -> str:
    """pg_dump --schema-only of the pyqueue schema, without its per-run lines."""
    dumped = subprocess.run(
        ["pg_dump", "--schema-only", "--schema=pyqueue", "--dbname", psql_conninfo(conninfo)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    # pg_dump >= 15.14 brackets the dump with \restrict <random key>.
    lines = [line for line in dumped.splitlines() if not re.match(r"\\(un)?restrict ", line)]
    return "\n".join(lines)


def table_rows(conn: psycopg.Connection[Any], table: str) -> list[dict[str, Any]]:
    """Every row of pyqueue.<table>, by id, as JSON objects (to compare across versions)."""
    found = conn.execute(f"SELECT to_jsonb(t) FROM pyqueue.{table} t ORDER BY id").fetchall()
    return [row[0] for row in found]
