"""Daemon threads that run plain (non-async) handlers.

Not concurrent.futures.ThreadPoolExecutor: its threads are joined when the
interpreter exits, so a handler stuck in a call would keep a worker that was
told to stop at once (second SIGTERM) alive. Daemon threads end with the process.
No Future and no closure per call either: the threads pass each item to one
function, which reports its outcome itself (the executor batches those reports),
so that a short job costs the loop no object of its own beyond its Held.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger("pyqueue.worker")

Item = TypeVar("Item")


class DaemonThreads(Generic[Item]):
    """`size` daemon threads calling `run(item)` for each item submitted, in order.

    A call that returns RETIRE ends its thread: the pool gave that thread up
    while it was stuck in the call and started another in its place (`add`).
    """

    def __init__(self, size: int, name: str, run: Callable[[Item], object]) -> None:
        self._run = run
        self._name = name
        self._items: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._threads = 0
        for _ in range(size):
            self.add()

    def add(self) -> None:
        """One more thread."""
        self._threads += 1
        thread = threading.Thread(
            target=self._serve, name=f"{self._name}-{self._threads}", daemon=True
        )
        thread.start()

    def submit(self, item: Item) -> None:
        self._items.put(item)

    def _serve(self) -> None:
        while (item := self._items.get()) is not None:
            try:
                if self._run(item) is RETIRE:
                    return
            except BaseException:  # run handles its errors; keep the thread if not
                logger.exception("a handler thread's call failed")

    def shutdown(self) -> None:
        """Let each thread end after its current call; do not wait for them."""
        for _ in range(self._threads):
            self._items.put(None)


# What a call returns to end its thread.
RETIRE = object()
