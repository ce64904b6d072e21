"""Bring a database to the current pyqueue schema with yoyo-migrations.

The SQL lives in `sql/` (readable, one concern per file) and `migrations/`
(the yoyo steps). An installed wheel carries both under `pyqueue/_data/`; a
source checkout has them beside the package.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from yoyo import read_migrations
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.connections import DatabaseURI
from yoyo.exceptions import LockTimeout
from yoyo.migrations import MigrationList, default_migration_table

from pyqueue import queries
from pyqueue.connecting import connect
from pyqueue.errors import SchemaError

# The schema version this client is written for: what `pyqueue migrate` brings
# a database to.
SCHEMA_VERSION = 6
# The oldest schema version this client works with: it calls nothing that
# schema versions from this one on lack.
OLDEST_SCHEMA = 6
# The oldest PostgreSQL that pyqueue runs on (server_version_num), the one its
# tests run against.
MIN_SERVER_VERSION = 150000


@dataclass(frozen=True)
class Compatibility:
    """What a database's schema says of itself (pyqueue.schema_compatibility())."""

    version: int
    # Clients written for schema versions older than this are refused.
    oldest_client_version: int


def shipped_folder(name: str) -> Path:
    """The folder `sql` or `migrations`, from the wheel or from the checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_data" / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    raise SchemaError(f"pyqueue's {name}/ folder is missing from {package}")


class PsycopgBackend(PostgresqlPsycopgBackend):  # type: ignore[misc]
    """yoyo's psycopg 3 backend, connecting with a libpq connection string as it is.

    yoyo's own get_backend parses a URL itself and refuses what libpq accepts
    (several hosts, a service name, settings left to PG* variables). This
    backend carries the connection string to psycopg untouched; yoyo's copies
    of it (one per migration run) connect the same way.
    """

    def connect(self, dburi: DatabaseURI) -> psycopg.Connection[Any]:
        return connect(dburi.args["conninfo"], autocommit=True)


@contextmanager
def yoyo_backend(conninfo: str) -> Iterator[PsycopgBackend]:
    """A yoyo backend on the database at `conninfo` (any libpq string), closed after."""
    uri = DatabaseURI("postgresql+psycopg", None, None, None, None, "", {"conninfo": conninfo})
    backend = PsycopgBackend(uri, default_migration_table)
    with backend:
        backend.init_database()
        yield backend


def migrations(*extra_dirs: Path) -> MigrationList:
    """pyqueue's migrations, oldest first, then those of `extra_dirs` (for tests)."""
    return read_migrations(str(shipped_folder("migrations")), *map(str, extra_dirs))


def check_server(conn: psycopg.Connection[Any]) -> None:
    """Raise SchemaError when the server is older than pyqueue supports."""
    if conn.info.server_version < MIN_SERVER_VERSION:
        found = conn.info.parameter_status("server_version") or conn.info.server_version
        raise SchemaError(
            f"this PostgreSQL server is version {found}; pyqueue needs PostgreSQL "
            f"{MIN_SERVER_VERSION // 10000} or newer"
        )


@contextmanager
def migration_lock(conninfo: str) -> Iterator[None]:
    """Hold the database's pyqueue migration lock, after checking the server.

    yoyo's own lock is a table row, taken after yoyo has set up its tables, and
    left behind by a process killed while holding it. This one is a session
    advisory lock: processes migrating at once (workers started with migrate=True)
    wait for it in turn, and the server frees it when its holder dies.
    """
    with connect(conninfo, autocommit=True) as conn:
        check_server(conn)
        conn.execute(queries.MIGRATION_LOCK)
        yield


def migrate(conninfo: str, to_apply: MigrationList | None = None) -> int:
    """Apply every pending migration; return how many were applied.

    `to_apply` defaults to all of pyqueue's migrations. Safe to call from many
    processes at once: one applies them, the others then find nothing to do.
    """
    with migration_lock(conninfo), yoyo_backend(conninfo) as backend:
        try:
            with backend.lock():
                pending = backend.to_apply(migrations() if to_apply is None else to_apply)
                backend.apply_migrations(pending)
        except LockTimeout as error:
            raise SchemaError(
                f"yoyo's migration lock is held ({error}); pyqueue's own migrations "
                "wait for each other, so another tool is migrating or was killed doing it"
            ) from None
    return len(pending)


def rollback(conninfo: str, to_roll_back: MigrationList) -> int:
    """Roll back those of `to_roll_back` that are applied, newest first; return how many."""
    with migration_lock(conninfo), yoyo_backend(conninfo) as backend, backend.lock():
        applied = backend.to_rollback(to_roll_back)
        backend.rollback_migrations(applied)
    return len(applied)


def rollback_all(conninfo: str) -> int:
    """Roll back every applied migration: the database holds no pyqueue schema after."""
    return rollback(conninfo, migrations())


def compatibility(conn: psycopg.Connection[Any]) -> Compatibility | None:
    """What the database's schema serves, or None when pyqueue is not installed."""
    row = conn.execute(queries.SCHEMA_FUNCTIONS).fetchone()
    if row is None or not row[1]:
        return None
    query = queries.SCHEMA_COMPATIBILITY if row[0] else queries.SCHEMA_VERSION_ONLY
    found = conn.execute(query).fetchone()
    assert found is not None
    return Compatibility(int(found[0]), int(found[1]))


def installed_version(conn: psycopg.Connection[Any]) -> int | None:
    """The schema version in the database, or None when pyqueue is not installed."""
    found = compatibility(conn)
    return found.version if found else None


def version_at(conninfo: str) -> int | None:
    """installed_version() of the database at `conninfo`."""
    with connect(conninfo, autocommit=True) as conn:
        return installed_version(conn)


def refusal(
    found: Compatibility | None,
    written_for: int | None = None,
    oldest_usable: int | None = None,
) -> str | None:
    """Why a client cannot work with the schema `found`, or None when it can.

    A client written for schema version `written_for` that can use schemas from
    `oldest_usable` on (default: this client's) works with any schema at least
    that old whose oldest_client_version it meets. The message says which side
    to upgrade.
    """
    written_for = SCHEMA_VERSION if written_for is None else written_for
    oldest_usable = OLDEST_SCHEMA if oldest_usable is None else oldest_usable
    if found is None:
        return "the pyqueue schema is not installed here: run `pyqueue migrate`"
    if found.version < oldest_usable:
        return (
            f"the database has pyqueue schema version {found.version}, older than this "
            f"client can use ({oldest_usable} or newer): run `pyqueue migrate`"
        )
    if written_for < found.oldest_client_version:
        return (
            f"the database has pyqueue schema version {found.version}, which serves clients "
            f"written for schema version {found.oldest_client_version} or newer; this client "
            f"is written for {written_for}: upgrade pyqueue"
        )
    return None


def check_version(conn: psycopg.Connection[Any]) -> None:
    """Raise SchemaError unless this client can work with the database's schema."""
    reason = refusal(compatibility(conn))
    if reason is not None:
        raise SchemaError(reason)
