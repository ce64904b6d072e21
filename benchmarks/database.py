"""The database the benchmarks run in: a private server, or DATABASE_URL.

Either way the benchmarks work in a database of their own, created here and
dropped at the end, holding the pyqueue schema and the raw baseline's table
side by side: both are measured on the same server, under the same load.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

import pyqueue
from benchmarks import raw
from pyqueue.localserver import temporary_server


@dataclass(frozen=True)
class BenchDatabase:
    dsn: str
    server: str  # "private" or the DATABASE_URL's host:port

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True, **kwargs)

    def reset(self) -> None:
        """Empty both queues and return pyqueue's settings to the defaults.

        TRUNCATE gives the tables new files, so no bloat carries from one
        scenario into the next; the checkpoint keeps setup's writes out of the
        measurement that follows.
        """
        with self.connect() as conn:
            conn.execute(
                "TRUNCATE pyqueue.jobs, pyqueue.dead_jobs, bench_raw.jobs RESTART IDENTITY"
            )
            conn.execute("DELETE FROM pyqueue.queues WHERE name <> '*'")
            self.settle(conn)

    def settle(self, conn: psycopg.Connection[Any]) -> None:
        """VACUUM ANALYZE both job tables and checkpoint: setup, not measured."""
        conn.execute("VACUUM (ANALYZE) pyqueue.jobs")
        conn.execute("VACUUM (ANALYZE) bench_raw.jobs")
        # A DATABASE_URL role without pg_checkpoint skips it.
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")

    @contextmanager
    def sibling(self, suffix: str) -> Iterator[BenchDatabase]:
        """Another such database on the same server, for the duration of the block."""
        with _own_database(self.dsn, suffix) as dsn:
            yield BenchDatabase(dsn, self.server)

    def setting(self, name: str) -> str:
        with self.connect() as conn:
            row = conn.execute("SELECT current_setting(%s)", [name]).fetchone()
        assert row is not None
        return str(row[0])


@contextmanager
def bench_database(url: str | None = None) -> Iterator[BenchDatabase]:
    """A fresh database with both queues, on DATABASE_URL's server or a private one."""
    url = url or os.environ.get("DATABASE_URL")
    if url:
        with _own_database(url) as dsn:
            info = psycopg.conninfo.conninfo_to_dict(url)
            yield BenchDatabase(dsn, f"{info.get('host', 'localhost')}:{info.get('port', 5432)}")
        return
    # Default durability settings: fsync and synchronous_commit stay on.
    with temporary_server() as server, _own_database(server.url()) as dsn:
        yield BenchDatabase(dsn, "private (temporary, default settings)")


@contextmanager
def _own_database(url: str, suffix: str = "") -> Iterator[str]:
    name = f"pyqueue_bench_{os.getpid()}{suffix}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(url, dbname=name)
    try:
        pyqueue.migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            raw.install(conn)
        yield dsn
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
