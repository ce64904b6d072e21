"""Bring a database to the current pyqueue schema with yoyo-migrations.

The SQL lives in `sql/` (readable, one concern per file) and `migrations/`
(the yoyo steps). An installed wheel carries both under `pyqueue/_data/`; a
source checkout has them beside the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict
from yoyo import get_backend, read_migrations

from pyqueue.errors import SchemaError

# The schema version this client was written for (pyqueue.schema_version()).
SCHEMA_VERSION = 1


def data_dir(name: str) -> Path:
    """The folder `sql` or `migrations`, from the wheel or from the checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "_data" / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    raise SchemaError(f"pyqueue's {name}/ folder is missing from {package}")


def yoyo_url(conninfo: str) -> str:
    """A yoyo database URL for a libpq connection string or URL.

    yoyo picks its driver from the URL scheme: postgresql+psycopg is psycopg 3.
    """
    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", None)
    host = params.pop("host", "")
    port = params.pop("port", "")
    dbname = quote(params.pop("dbname", ""), safe="")
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    netloc = f"{auth}{quote(host, safe='')}{':' + port if port else ''}"
    query = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in params.items())
    return f"postgresql+psycopg://{netloc}/{dbname}{'?' + query if query else ''}"


def migrate(conninfo: str) -> int:
    """Apply every pending migration; return how many were applied."""
    backend = get_backend(yoyo_url(conninfo))
    migrations = read_migrations(str(data_dir("migrations")))
    with backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return len(pending)


def rollback_all(conninfo: str) -> int:
    """Roll back every applied migration: the database holds no pyqueue schema after."""
    backend = get_backend(yoyo_url(conninfo))
    migrations = read_migrations(str(data_dir("migrations")))
    with backend.lock():
        applied = backend.to_rollback(migrations)
        backend.rollback_migrations(applied)
    return len(applied)


def installed_version(conn: psycopg.Connection[Any]) -> int | None:
    """The schema version in the database, or None when pyqueue is not installed."""
    row = conn.execute("SELECT to_regprocedure('pyqueue.schema_version()') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    version = conn.execute("SELECT pyqueue.schema_version()").fetchone()
    return int(version[0]) if version else None


def check_version(conn: psycopg.Connection[Any]) -> None:
    """Raise SchemaError unless the database holds the schema this client knows."""
    version = installed_version(conn)
    if version is None:
        raise SchemaError("the pyqueue schema is not installed here: run `pyqueue migrate`")
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"the database has pyqueue schema version {version}, newer than this "
            f"client's {SCHEMA_VERSION}: upgrade pyqueue"
        )
    if version < SCHEMA_VERSION:
        raise SchemaError(
            f"the database has pyqueue schema version {version}, older than this "
            f"client's {SCHEMA_VERSION}: run `pyqueue migrate`"
        )
