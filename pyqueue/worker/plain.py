"""Plain (non-async) handlers: run on daemon threads, outcomes posted back to the loop.

A thread hands its outcome back together with those of the other threads that
finished meanwhile, in one loop callback: the loop is the worker's bottleneck,
and a wake-up per job would cost it more than the job. An outcome after
progress reports goes alone, the way the reports went, so that it reaches the
loop after them; so does that of a job the worker gave up on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pyqueue.worker.outcome import Held, encode_result, failure
from pyqueue.worker.threads import RETIRE, DaemonThreads

# A plain handler's outcome, posted by its thread: (held, result, error, traceback).
Posted = tuple[Held, "str | None", "str | None", "str | None"]


class PlainThreads:
    """Runs `handlers[queue](payload, context)` for each job submitted, on daemon threads.

    Outcomes reach the loop through `finish_one(*posted)` or, a burst at a time,
    `finish_burst(posted)`; both are called on the loop.
    """

    def __init__(
        self,
        size: int,
        handlers: Mapping[str, Callable[[Any, Any], Any]],
        loop: asyncio.AbstractEventLoop,
        finish_one: Callable[..., None],
        finish_burst: Callable[[list[Posted]], None],
    ) -> None:
        self.handlers = handlers
        self.loop = loop
        self.finish_one = finish_one
        self.finish_burst = finish_burst
        # Outcomes posted by handler threads and not yet taken by the loop.
        self._posted: list[Posted] = []
        self._posted_lock = threading.Lock()
        self._threads = DaemonThreads(size, "pyqueue-handler", self._run)

    def submit(self, held: Held) -> None:
        self._threads.submit(held)

    def add(self) -> None:
        """One more thread, in place of one left running a job the worker gave up on."""
        self._threads.add()

    def shutdown(self) -> None:
        """Let each thread end after its current call; do not wait for them."""
        self._threads.shutdown()

    def _run(self, held: Held) -> object:
        """On a handler thread: run the handler, post its outcome to the loop."""
        handler = self.handlers[held.job.queue]
        try:
            posted: Posted = (
                held,
                encode_result(handler(held.job.payload, held.context)),
                None,
                None,
            )
        except BaseException as error:
            posted = (held, *failure(error))
        if held.abandoned:  # another thread has taken this one's place
            self._call_on_loop(self.finish_one, *posted)
            return RETIRE
        if held.context.reported:
            self._call_on_loop(self.finish_one, *posted)
            return None
        with self._posted_lock:
            self._posted.append(posted)
            first = len(self._posted) == 1  # else _take_posted is already due
        if first:
            self._call_on_loop(self._take_posted)
        return None

    def _call_on_loop(self, callback: Callable[..., object], *args: Any) -> None:
        # RuntimeError: the loop is closed, the worker stopped at once.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(callback, *args)

    def _take_posted(self) -> None:
        with self._posted_lock:
            posted, self._posted = self._posted, []
        self.finish_burst(posted)
