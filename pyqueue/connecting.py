"""Opening a connection: any libpq connection string, a connect timeout, a clear cause.

Every connection pyqueue opens outside the worker's reconnecting loop comes
from `connect`: it applies a connect timeout unless the caller, the connection
string or PGCONNECT_TIMEOUT chose one, and turns libpq's failure into
CannotConnect, whose reason says in a few words what is wrong. The
connection string is handed to libpq as it is, so multi-host lists,
target_session_attrs, service names and PG* variables all work.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pyqueue.errors import CannotConnect

# Seconds a connection attempt may take (per host of a multi-host string) when
# nobody said otherwise: long enough for a loaded server, short enough that an
# unreachable one is reported while the operator still watches.
DEFAULT_CONNECT_TIMEOUT = 5

# libpq's messages, matched in this order: a multi-host failure lists every
# host's error, and the most specific one names the problem best.
REASONS = [
    ("unknown database", r'database ".*" does not exist'),
    (
        "credentials refused",
        r"password authentication failed|role \".*\" does not exist|no pg_hba\.conf entry"
        r"|authentication failed|no password supplied|is not permitted to log in"
        r"|permission denied for database",
    ),
    (
        "server full",
        r"too many clients|remaining connection slots are reserved|too many connections for",
    ),
    ("read-only standby", r"server is in hot standby mode|session is read-only"),
    ("not a standby", r"server is not in hot standby mode|session is not read-only"),
    (
        "server starting or stopping",
        r"the database system is (starting up|shutting down|in recovery mode|not yet accepting)",
    ),
    (
        "malformed connection string",
        r"invalid port number|invalid integer value|invalid connection option|missing \"=\""
        r"|invalid uri|unterminated quoted string|invalid value for parameter|invalid sslmode"
        r"|bad value for connect_timeout|invalid percent-encoded",
    ),
    (
        "unreachable",
        r"connection refused|timeout expired|timed out|could not translate host name"
        r"|failed to resolve host|no route to host|network is unreachable"
        r"|no such file or directory|server closed the connection unexpectedly",
    ),
]


def with_connect_timeout(conninfo: str, seconds: float | None = None) -> str:
    """conninfo with a connect timeout: `seconds` if given, else its own or PGCONNECT_TIMEOUT's,
    else DEFAULT_CONNECT_TIMEOUT.

    libpq counts whole seconds, two at least: `seconds` is rounded up.
    """
    try:
        given = conninfo_to_dict(conninfo)
    except psycopg.Error as error:
        raise cannot_connect(error) from None
    if seconds is not None:
        if not math.isfinite(seconds) or seconds <= 0:
            raise CannotConnect("malformed connection string", f"connect timeout {seconds!r}")
        return make_conninfo(conninfo, connect_timeout=str(max(2, math.ceil(seconds))))
    if "connect_timeout" in given or os.environ.get("PGCONNECT_TIMEOUT"):
        return conninfo
    return make_conninfo(conninfo, connect_timeout=str(DEFAULT_CONNECT_TIMEOUT))


def cannot_connect(error: psycopg.Error) -> CannotConnect:
    """The CannotConnect that says what libpq's connection failure means."""
    text = str(error).strip()
    detail = " ".join(text.removeprefix("connection failed:").split())
    lowered = text.lower()
    if isinstance(error, psycopg.ProgrammingError):
        return CannotConnect("malformed connection string", detail)
    for reason, pattern in REASONS:
        if re.search(pattern, lowered):
            return CannotConnect(reason, detail)
    return CannotConnect("connection failed", detail)


def connect(conninfo: str, **kwargs: Any) -> psycopg.Connection[Any]:
    """psycopg.connect with a connect timeout, raising CannotConnect on failure."""
    try:
        return psycopg.connect(with_connect_timeout(conninfo), **kwargs)
    except psycopg.Error as error:
        raise cannot_connect(error) from None
