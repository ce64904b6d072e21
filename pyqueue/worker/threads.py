"""Daemon threads that run plain (non-async) handlers.

Not concurrent.futures.ThreadPoolExecutor: its threads are joined when the
interpreter exits, so a handler stuck in a call would keep a worker that was
told to stop at once (second SIGTERM) alive. Daemon threads end with the process.
No Future per call either: the calls report their outcome themselves (the
session batches those reports), which is most of the cost of a short job.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

logger = logging.getLogger("pyqueue.worker")


class DaemonThreads:
    """`size` daemon threads taking calls from one queue, in order."""

    def __init__(self, size: int, name: str) -> None:
        self._calls: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
            for i in range(1, size + 1)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[[], object]) -> None:
        self._calls.put(call)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            try:
                call()
            except BaseException:  # the calls handle their errors; keep the thread if not
                logger.exception("a handler thread's call failed")

    def shutdown(self) -> None:
        """Let each thread end after its current call; do not wait for them."""
        for _ in self._threads:
            self._calls.put(None)
