"""Test fixtures: a real PostgreSQL, and a fresh migrated database per test.

With DATABASE_URL set, the tests use that server (they create and drop their
own databases on it). Otherwise one private server is started for the session
from the local PostgreSQL programs (as an unprivileged user when we are root),
with durability off because its data is thrown away.

pytest-postgresql builds a template database once, with the migrations
applied, and clones it for every test: each test starts from an empty queue.
With PYQUEUE_TEST_SQL_DIR naming a folder, the template is built from that
folder's `[0-9]*.sql` files instead, run in name order (scripts/mutate.py
points it at a mutated copy of sql/).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pytest_postgresql import factories
from pytest_postgresql.executors.noop import NoopExecutor
from pytest_postgresql.janitor import DatabaseJanitor

import pyqueue
from pyqueue.localserver import temporary_server

FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@dataclass
class ServerInfo:
    """What pytest-postgresql's `depends_on` reads from a base fixture."""

    host: str
    port: int
    user: str
    password: str | None
    options: str = ""
    maintenance_dbname: str = "postgres"
    template_dbname: str | None = None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[ServerInfo]:
    url = os.environ.get("DATABASE_URL")
    if url:
        params = conninfo_to_dict(url)
        yield ServerInfo(
            host=str(params.get("host", "127.0.0.1")),
            port=int(params.get("port", 5432)),
            user=str(params.get("user", "postgres")),
            password=params.get("password"),  # type: ignore[arg-type]
        )
        return
    with temporary_server(FAST_SETTINGS) as server:
        port = server.port()
        assert port is not None
        yield ServerInfo(host="127.0.0.1", port=port, user="postgres", password=server.secret())


def _load_schema(**params: Any) -> None:
    # The janitor passes psycopg.connect() arguments; keep the libpq ones.
    keys = ("host", "port", "user", "password", "dbname", "options")
    conninfo = make_conninfo(**{k: params[k] for k in keys if params.get(k)})
    sql_dir = os.environ.get("PYQUEUE_TEST_SQL_DIR")
    if sql_dir:
        _run_sql_files(conninfo, Path(sql_dir))
    else:
        pyqueue.migrate(conninfo)


def _run_sql_files(conninfo: str, folder: Path) -> None:
    """Build the schema from a folder of SQL files, each run whole, in name order."""
    files = sorted(folder.glob("[0-9]*.sql"))
    assert files, f"PYQUEUE_TEST_SQL_DIR={folder} holds no [0-9]*.sql file"
    with psycopg.connect(conninfo) as conn:
        for path in files:
            # Without parameters, one execute runs every statement of the file.
            conn.execute(path.read_text())


postgresql_noproc = factories.postgresql_noproc(depends_on="pg_server", load=[_load_schema])


class FileCopyJanitor(DatabaseJanitor):
    """Clones the template with STRATEGY FILE_COPY.

    PostgreSQL 15's default, WAL_LOG, writes every page of the template to the
    WAL: ten times the cost of copying the files of a database this small, and
    every test makes one.
    """

    def _build_create_database_sql(self) -> sql.Composed:
        query = super()._build_create_database_sql()
        if self.template_dbname and not self.is_template():
            query += sql.SQL(" STRATEGY FILE_COPY")
        return query


@pytest.fixture
def postgresql(postgresql_noproc: NoopExecutor) -> Iterator[psycopg.Connection[Any]]:
    """A fresh database cloned from the migrated template, dropped after the test."""
    proc = postgresql_noproc
    dbname = f"{proc.dbname}_{uuid.uuid4().hex[:12]}"
    janitor = FileCopyJanitor(
        user=proc.user,
        host=proc.host,
        port=proc.port,
        dbname=dbname,
        template_dbname=proc.template_dbname,
        maintenance_dbname=proc.maintenance_dbname,
        password=proc.password,
    )
    with (
        janitor,
        psycopg.connect(
            dbname=dbname, user=proc.user, password=proc.password, host=proc.host, port=proc.port
        ) as conn,
    ):
        yield conn


@pytest.fixture
def dsn(postgresql: psycopg.Connection[Any]) -> str:
    """The connection string of this test's own migrated database."""
    info = postgresql.info
    return make_conninfo(info.dsn, password=info.password or None)


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection for plain SQL calls, as a psql user makes them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def queue(dsn: str) -> Iterator[pyqueue.Queue]:
    with pyqueue.Queue(dsn) as q:
        yield q
