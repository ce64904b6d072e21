"""Typed handlers: the payload decoded into the handler's annotated type first.

`typed_handler` is applied once, when a handler is registered: a handler
whose payload argument is annotated with a dataclass, a TypedDict or a
pydantic model (see pyqueue.typed) is wrapped so that it receives that type;
an untyped one is returned as it is, costing nothing per job. A payload that
does not fit fails its job for good: the job is marked not retryable, since
running it again cannot change its payload.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pyqueue.typed import Decode, PayloadMismatch, payload_decoder
from pyqueue.worker.context import JobContext
from pyqueue.worker.executor import Handler, is_async


def typed_handler(function: Callable[..., Any], queue: str) -> Handler:
    """The handler to run for `function`: itself, or a wrapper that decodes the payload.

    Raises InvalidArgument when the payload annotation cannot be decoded.
    """
    decode = payload_decoder(function, queue)
    if decode is None:
        return function
    if is_async(function):

        @functools.wraps(function)
        async def run_async(payload: Any, job: JobContext) -> Any:
            return await function(_decoded(decode, payload, job), job)

        return run_async

    @functools.wraps(function)
    def run(payload: Any, job: JobContext) -> Any:
        return function(_decoded(decode, payload, job), job)

    return run


def _decoded(decode: Decode, payload: Any, job: JobContext) -> Any:
    try:
        return decode(payload, "payload")
    except PayloadMismatch as error:
        job.retryable = False
        raise PayloadMismatch(
            f"the payload does not fit the handler's type, so the job is not retried: {error}"
        ) from None
