"""Typed exceptions for the errors that the SQL functions raise.

The SQL API signals bad input and unknown jobs with SQLSTATEs; this module maps
them onto Python exception classes, keeping the database's message (which names
the argument at fault).
"""

from __future__ import annotations

import psycopg


class PyqueueError(Exception):
    """Base class of every error that pyqueue raises."""


class InvalidArgument(PyqueueError, ValueError):
    """An argument was refused (bad queue name, negative delay, payload not JSON...)."""


class InvalidPayload(InvalidArgument):
    """The payload cannot be stored as JSON."""


class PayloadMismatch(InvalidPayload):
    """A job's payload does not fit its handler's type; running it again cannot help."""


class JobNotFound(PyqueueError, LookupError):
    """No job has the given id."""


class JobStateError(PyqueueError):
    """The job exists but is not in a state that allows the action."""


class LeaseLost(JobStateError):
    """A job transaction did not commit: its run no longer holds the job."""


class HungHandlers(PyqueueError):
    """Too many handler threads still run jobs the worker has given up on: restart it."""


class SchemaError(PyqueueError):
    """The database schema is missing or newer than this client knows."""


class CannotConnect(PyqueueError, ConnectionError):
    """No connection could be opened; `reason` says why in a few words.

    reason is one of: "malformed connection string", "unreachable",
    "credentials refused", "unknown database", "server full", "read-only
    standby", "server starting or stopping", "connection failed".
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"cannot connect to the database ({reason}): {detail}")
        self.reason = reason


class ConnectionLost(PyqueueError, ConnectionError):
    """The connection broke during a call that only reads: trying again is safe."""


class OutcomeUnknown(ConnectionLost):
    """The connection broke during a call that writes: it may or may not have happened.

    For an enqueue, a retry with the same idempotency key is safe: it returns
    the job if the first call made one, and makes it otherwise.
    """


class ReadOnlyDatabase(PyqueueError):
    """The server refused a write: it is a read-only standby (or in read-only mode)."""


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
    if sqlstate == "25006":  # read_only_sql_transaction: a standby, or read-only mode
        return ReadOnlyDatabase
    return None


def raise_translated(error: BaseException) -> None:
    """Raise the typed pyqueue error that the API defines for `error`; return if none.

    Text arguments that cannot be encoded for the database (a lone surrogate)
    become InvalidArgument.
    """
    if isinstance(error, UnicodeEncodeError):
        # Text with a lone surrogate cannot be sent at all: psycopg refuses to
        # encode it, so no SQL function ever sees it to name it.
        raise InvalidArgument(
            f"{error.object!r} is not Unicode text that PostgreSQL can store ({error.reason})"
        ) from None
    if isinstance(error, psycopg.Error):
        kind = _classify(error)
        if kind is not None:
            message = error.diag.message_primary or str(error)
            if kind is ReadOnlyDatabase:
                message = (
                    f"{message}: the server is a read-only standby; connect to the primary "
                    "(a multi-host URL with target_session_attrs=read-write finds it)"
                )
            raise kind(message.removeprefix("pyqueue: ")) from error


class translate_errors:  # lower case: used as a function, `with translate_errors():`
    """Context manager: re-raise database errors as the typed pyqueue errors.

    A class rather than a @contextmanager generator: it wraps every client
    call, one-job enqueues included, and a class's enter and exit build no
    generator.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        if error is not None:
            raise_translated(error)


def first_line(error: BaseException | str | None) -> str:
    """The first line of an error's message, for a one-line report.

    An exception without a message is named by its class, so that the report
    is never empty; no text at all gives "".
    """
    text = "" if error is None else str(error).strip()
    if text:
        return text.splitlines()[0]
    return type(error).__name__ if isinstance(error, BaseException) else ""
