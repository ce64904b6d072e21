"""Daemon threads that run plain (non-async) handlers.

Not concurrent.futures.ThreadPoolExecutor: its threads are joined when the
interpreter exits, so a handler stuck in a call would keep a worker that was
told to stop at once (second SIGTERM) alive. Daemon threads end with the process.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

_Task = tuple[Callable[[], Any], "Future[Any]"]


class DaemonThreads:
    """`size` daemon threads taking calls from one queue."""

    def __init__(self, size: int, name: str) -> None:
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
            for i in range(1, size + 1)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._tasks.put((call, future))
        return future

    def _serve(self) -> None:
        while (task := self._tasks.get()) is not None:
            call, future = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as error:  # handed to the awaiting coroutine
                future.set_exception(error)

    def shutdown(self) -> None:
        """Let each thread end after its current call; do not wait for them."""
        for _ in self._threads:
            self._tasks.put(None)
