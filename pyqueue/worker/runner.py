"""`Worker`: handlers per queue, settings, and run() until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pyqueue.errors import InvalidArgument
from pyqueue.worker.context import JobContext
from pyqueue.worker.decoding import typed_handler
from pyqueue.worker.executor import Handler
from pyqueue.worker.metrics import MetricsServer, WorkerMetrics
from pyqueue.worker.session import Session
from pyqueue.worker.settings import checked_settings, overridden, queue_names, work_queues
from pyqueue.worker.startup import wait_for_schema

logger = logging.getLogger("pyqueue.worker")

# A handler: handler(payload, job); its own precise type is kept for the caller.
H = TypeVar("H", bound=Callable[[Any, JobContext], object])

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def default_worker_name() -> str:
    """host:pid:random, so that people can tell workers apart in the jobs table."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """Runs the handlers registered per queue on the jobs claimed from PostgreSQL.

    Defaults: 4 handlers at once, claims of at most 10 jobs, as many claimed
    ahead of the handlers (prefetch; worker/state.py states the bounds on the
    jobs a worker holds), a 30 s lease extended every lease/3, a poll every
    5 s when no NOTIFY arrives, 25 s for running handlers to finish after
    SIGTERM, and a maintenance pass (shared by the whole fleet) every 10 s;
    maintenance_interval=None leaves maintenance to `pyqueue maintain` or the
    operator's own scheduler.
    """

    def __init__(
        self,
        conninfo: str | None = None,
        *,
        concurrency: int = 4,
        batch_size: int = 10,
        prefetch: int | None = None,
        poll_interval: float = 5.0,
        lease: float = 30.0,
        heartbeat_interval: float | None = None,
        grace_period: float = 25.0,
        queues: Sequence[str] | None = None,
        name: str | None = None,
        maintenance_interval: float | None = 10.0,
        max_abandoned_threads: int | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
    ) -> None:
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidArgument(f"name must be a non-empty string, got {name!r}")
        self.conninfo = conninfo
        self.settings = checked_settings(
            concurrency=concurrency,
            batch_size=batch_size,
            prefetch=prefetch,
            poll_interval=poll_interval,
            lease=lease,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            max_abandoned_threads=max_abandoned_threads,
            maintenance_interval=maintenance_interval,
        )
        self.queues = queue_names(queues)
        # This process's figures (worker/metrics.py), served on metrics_port while running.
        self.metrics: WorkerMetrics | None = None
        self.metrics_port: int | None = None
        self.metrics_host = metrics_host
        if metrics_port is not None:
            self.serve_metrics(metrics_port, metrics_host)
        self._name = name
        self.name = name  # the name of the current or last run; set by run() if not given
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requests = 0  # stop() calls not yet acted on
        self._stops = 0  # stop requests acted on in this run
        self._session: Session | None = None
        self._main: asyncio.Task[None] | None = None

    def handler(self, queue: str) -> Callable[[H], H]:
        """Register the decorated function as the handler of `queue`.

        It is called `handler(payload, job)`, plain or `async def`; its return
        value (JSON-serialisable, a dataclass or pydantic model, or None)
        becomes the job's result, an exception fails the job. A payload
        annotated with a dataclass, TypedDict or pydantic model arrives as that
        type; one that does not fit fails the job for good (pyqueue.typed).
        """
        if not isinstance(queue, str) or not queue:
            raise InvalidArgument(f"queue must be a non-empty string, got {queue!r}")

        def register(function: H) -> H:
            if not callable(function):
                raise InvalidArgument(f"the handler of {queue!r} must be callable")
            if queue in self._handlers:
                raise InvalidArgument(f"queue {queue!r} already has a handler")
            self._handlers[queue] = typed_handler(function, queue)
            return function

        return register

    @property
    def handlers(self) -> dict[str, Handler]:
        """The handler run for each queue (typed ones wrapped to decode their payload)."""
        return dict(self._handlers)

    def serve_metrics(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve this process's metrics on http://host:port/metrics while run() runs."""
        self.metrics_port, self.metrics_host = port, host
        self.metrics = self.metrics or WorkerMetrics()

    def configure(
        self,
        *,
        concurrency: int | None = None,
        batch_size: int | None = None,
        prefetch: int | None = None,
        poll_interval: float | None = None,
        queues: Sequence[str] | None = None,
        maintenance_interval: float | None = None,
        maintenance: bool = True,
    ) -> None:
        """Override settings (the CLI's options); None leaves a setting as it is.

        maintenance=False turns the worker's maintenance passes off.
        """
        self.settings = overridden(
            self.settings,
            concurrency=concurrency,
            batch_size=batch_size,
            prefetch=prefetch,
            poll_interval=poll_interval,
            maintenance_interval=maintenance_interval,
            maintenance=maintenance,
        )
        if queues is not None:
            self.queues = queue_names(queues)

    def run(
        self,
        conninfo: str | None = None,
        *,
        install_signal_handlers: bool = True,
        migrate: bool = False,
    ) -> None:
        """Work until stop(), SIGTERM or SIGINT (the second one stops at once).

        The database is `conninfo`, else the constructor's, else $DATABASE_URL.
        With migrate=True, pending migrations are applied first (workers started
        at once take turns; one applies them). Raises SchemaError, before
        claiming anything, when the pyqueue schema is missing or one this client
        cannot work with (pyqueue.schema.refusal); a database that cannot be
        reached yet is waited for, with backoff, until it can or a stop.
        """
        url = conninfo or self.conninfo or os.environ.get("DATABASE_URL")
        if not url:
            raise InvalidArgument("no database: pass conninfo or set DATABASE_URL")
        queues = work_queues(self._handlers, self.queues)
        self.name = self._name or default_worker_name()
        signals = install_signal_handlers and threading.current_thread() is threading.main_thread()
        serving: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if self.metrics is not None and self.metrics_port is not None:
            serving = MetricsServer(self.metrics, self.metrics_port, self.metrics_host)
        try:
            with serving:
                asyncio.run(self._serve(url, queues, signals, migrate))
        finally:
            with self._lock:
                self._loop = None
                self._stop_requests = 0

    def stop(self) -> None:
        """Ask run() to stop, from any thread, as SIGTERM does; a second call stops at once.

        A call made before run() has started makes it return as soon as it starts.
        """
        with self._lock:
            self._stop_requests += 1
            loop = self._loop
        if loop is not None:
            # RuntimeError: the loop has just closed, run() is returning.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._act_on_stop_requests)

    async def _serve(self, conninfo: str, queues: list[str], signals: bool, migrate: bool) -> None:
        assert self.name is not None
        loop = asyncio.get_running_loop()
        session = Session(
            conninfo, self.name, dict(self._handlers), queues, self.settings, self.metrics
        )
        self._session, self._stops = session, 0
        self._main = asyncio.current_task()
        if signals:
            for sig in STOP_SIGNALS:
                loop.add_signal_handler(sig, self._on_signal, sig)
        with self._lock:
            self._loop = loop
        try:
            self._act_on_stop_requests()  # stop() may have come before the loop existed
            if not await wait_for_schema(conninfo, session.stopping, migrate):
                return
            logger.info(
                "worker %s started: queues %s, %s", self.name, ", ".join(queues), self.settings
            )
            await session.run()
        except asyncio.CancelledError:
            if self._stops < 2:
                raise
        finally:
            if signals:
                for sig in STOP_SIGNALS:
                    loop.remove_signal_handler(sig)
            self._session = self._main = None
        logger.info("worker %s stopped", self.name)
        if session.state.failure is not None:
            raise session.state.failure

    def _on_signal(self, sig: signal.Signals) -> None:
        logger.info("received %s", sig.name)
        self.stop()

    def _act_on_stop_requests(self) -> None:
        with self._lock:
            requests, self._stop_requests = self._stop_requests, 0
        for _ in range(requests):
            self._stops += 1
            if self._stops == 1 and self._session is not None:
                logger.info("stopping: no new jobs; running handlers may finish")
                self._session.stop()
            elif self._stops == 2 and self._main is not None:
                logger.warning(
                    "stopping at once: jobs still running will run again when their lease expires"
                )
                self._main.cancel()
