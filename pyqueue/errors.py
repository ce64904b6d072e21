"""Typed exceptions for the errors that the SQL functions raise.

The SQL API signals bad input and unknown jobs with SQLSTATEs; this module maps
them onto Python exception classes, keeping the database's message (which names
the argument at fault).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


class PyqueueError(Exception):
    """Base class of every error that pyqueue raises."""


class InvalidArgument(PyqueueError, ValueError):
    """An argument was refused (bad queue name, negative delay, payload not JSON...)."""


class InvalidPayload(InvalidArgument):
    """The payload cannot be stored as JSON."""


class JobNotFound(PyqueueError, LookupError):
    """No job has the given id."""


class JobStateError(PyqueueError):
    """The job exists but is not in a state that allows the action."""


class SchemaError(PyqueueError):
    """The database schema is missing or newer than this client knows."""


def _classify(error: psycopg.Error) -> type[PyqueueError] | None:
    sqlstate = error.sqlstate or ""
    if sqlstate == "P0002":  # no_data_found
        return JobNotFound
    if sqlstate == "55000":  # object_not_in_prerequisite_state
        return JobStateError
    if sqlstate == "54000":  # program_limit_exceeded: pyqueue raises it for a payload too big
        return InvalidPayload
    if sqlstate.startswith("22"):  # data exception: bad input of any kind
        return InvalidArgument
    return None


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise database errors that the API defines as typed pyqueue errors.

    Also text arguments that cannot be encoded for the database (a lone
    surrogate) as InvalidArgument.
    """
    try:
        yield
    except UnicodeEncodeError as error:
        # Text with a lone surrogate cannot be sent at all: psycopg refuses to
        # encode it, so no SQL function ever sees it to name it.
        raise InvalidArgument(
            f"{error.object!r} is not Unicode text that PostgreSQL can store ({error.reason})"
        ) from None
    except psycopg.Error as error:
        kind = _classify(error)
        if kind is None:
            raise
        message = error.diag.message_primary or str(error)
        raise kind(message.removeprefix("pyqueue: ")) from error
