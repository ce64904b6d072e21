"""A worker process's own metrics, served for Prometheus when the worker has a port.

    Worker(metrics_port=9464)   # http://host:9464/metrics while it runs

The figures are this process's (the queues' figures come from the database:
`pyqueue metrics`, pyqueue.metrics):

    pyqueue_worker_handler_duration_seconds{queue,outcome}  histogram
    pyqueue_worker_claims_total                              claim statements
    pyqueue_worker_claimed_jobs_total                        jobs they leased
    pyqueue_worker_claim_batch_size                          histogram of jobs per claim
    pyqueue_worker_reconnects_total{connection}              connections opened again

Each worker keeps its metrics in a registry of its own, so that several
workers in one process (tests, an embedding application) do not collide.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

if TYPE_CHECKING:
    from pyqueue.worker.outcome import Held

logger = logging.getLogger("pyqueue.worker")

# Handler durations: from a millisecond to ten minutes.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600)
BATCH_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class WorkerMetrics:
    """The worker's counters and histograms, in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        self.durations = Histogram(
            "pyqueue_worker_handler_duration_seconds",
            "Seconds each handler ran, by queue and by what became of the job",
            ["queue", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.claims = Counter(
            "pyqueue_worker_claims", "Claim statements run", registry=self.registry
        )
        self.claimed = Counter(
            "pyqueue_worker_claimed_jobs", "Jobs leased by claims", registry=self.registry
        )
        self.batch_sizes = Histogram(
            "pyqueue_worker_claim_batch_size",
            "Jobs leased per claim",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.reconnects = Counter(
            "pyqueue_worker_reconnects",
            "Database connections opened again after they broke",
            ["connection"],
            registry=self.registry,
        )

    def handled(self, held: Held, outcome: str) -> None:
        """A job's outcome was stored (or found lost): its handler's duration, if it ran."""
        duration = held.context.duration
        if duration is not None:
            self.durations.labels(held.job.queue, outcome).observe(duration)

    def claim(self, jobs: int) -> None:
        self.claims.inc()
        self.claimed.inc(jobs)
        self.batch_sizes.observe(jobs)

    def reconnected(self, connection: str) -> None:
        self.reconnects.labels(connection).inc()


class MetricsServer:
    """`with`: serve `metrics` over HTTP on `port` (0: any free port) while a worker runs."""

    def __init__(self, metrics: WorkerMetrics, port: int, host: str) -> None:
        self.metrics = metrics
        self.port = port
        self.host = host
        self._server: WSGIServer | None = None

    def __enter__(self) -> MetricsServer:
        self._server, _ = start_http_server(self.port, self.host, self.metrics.registry)
        self.port = self._server.server_port
        logger.info("worker metrics on http://%s:%s/metrics", self.host, self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
