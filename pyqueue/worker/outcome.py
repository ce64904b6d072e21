"""The jobs a worker holds, and what their handlers produced, shaped for SQL."""

from __future__ import annotations

import asyncio
import traceback
from dataclasses import dataclass
from typing import Any

from pyqueue.errors import InvalidPayload
from pyqueue.jobs import ClaimedJob
from pyqueue.values import sql_text, to_json
from pyqueue.worker.context import JobContext


@dataclass(eq=False, slots=True)
class Held:
    """A job claimed by this worker, from the claim until its outcome is stored.

    The outcome is set on the event loop when the handler is done (`finished`):
    its result, or its error (and traceback) when it failed. One object per job
    from claim to storage, because the worker's event loop is its bottleneck and
    every object allocated per job costs it allocation and garbage collection.
    """

    job: ClaimedJob
    context: JobContext
    started: bool = False  # its handler has been started (else it waits for a slot)
    finished: bool = False  # the handler is done; its outcome is on the way to SQL
    lost: bool = False  # a heartbeat found the lease gone (already logged)
    abandoned: bool = False  # lost while its handler ran: its slot was freed
    task: asyncio.Task[None] | None = None  # the handler's task, for an async handler
    result: str | None = None  # JSON text
    error: str | None = None  # None: the handler succeeded
    traceback: str | None = None


# The executor's queue to the completer: the outcomes finished together, one list each.
Outcomes = asyncio.Queue[list[Held]]

# What a handler produced: (result, error, traceback); error None is a success.
Outcome = tuple["str | None", "str | None", "str | None"]


class UnserialisableResult(Exception):
    """The handler returned a value that JSON cannot hold."""


def encode_result(value: Any) -> str | None:
    """The handler's return value as JSON text; None stores no result."""
    if value is None:
        return None
    try:
        return to_json(value, "the handler's result")
    except InvalidPayload as error:
        raise UnserialisableResult(str(error)) from None


def failure(error: BaseException) -> Outcome:
    """The outcome of a handler that raised: its message and formatted traceback."""
    if isinstance(error, UnserialisableResult):
        return None, str(error), None
    message = str(error) or type(error).__name__
    trace = "".join(traceback.format_exception(error))
    return None, sql_text(message), sql_text(trace)
