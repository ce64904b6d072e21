"""The queues' figures in Prometheus text format: `pyqueue metrics` and the dashboard's /metrics.

The figures are one read of the `pyqueue.queue_metrics` view (sql/75_metrics.sql
says what each column means), turned into metrics with a `queue` label by a
prometheus_client collector:

    pyqueue_jobs{queue,state}                 jobs by state (pending, running,
                                              completed, cancelled, dead)
    pyqueue_jobs_due{queue}                   pending jobs whose time has come
    pyqueue_oldest_due_age_seconds{queue}     how long the oldest due job has waited
    pyqueue_completed_last_minute{queue}      jobs completed in the last 60 s
    pyqueue_failed_last_minute{queue}         runs failed, to be retried, in the last 60 s
    pyqueue_dead_last_minute{queue}           jobs dead-lettered in the last 60 s
    pyqueue_lease_expired_jobs{queue}         running jobs whose lease ran out

A worker process's own figures (handler durations, claims) are apart:
pyqueue.worker.metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg.rows import dict_row

from pyqueue import queries

STATES = ("pending", "running", "completed", "cancelled", "dead")

# (view column, metric name, help) of the figures that are one gauge each.
GAUGES = (
    ("due", "pyqueue_jobs_due", "Pending jobs whose run_at has come"),
    ("oldest_due_seconds", "pyqueue_oldest_due_age_seconds",
     "Seconds the oldest due job has waited"),
    ("completed_last_minute", "pyqueue_completed_last_minute", "Jobs completed in the last minute"),
    ("failed_last_minute", "pyqueue_failed_last_minute",
     "Runs that failed and will be retried, in the last minute"),
    ("dead_last_minute", "pyqueue_dead_last_minute", "Jobs dead-lettered in the last minute"),
    ("lease_expired", "pyqueue_lease_expired_jobs",
     "Running jobs whose lease ran out, not yet recovered"),
)  # fmt: skip

Rows = Sequence[dict[str, Any]]


class QueueCollector(Collector):
    """Turns the rows of pyqueue.queue_metrics, read at each collect, into metric families."""

    def __init__(self, read: Callable[[], Rows]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rows = self.read()
        jobs = GaugeMetricFamily(
            "pyqueue_jobs",
            "Jobs by queue and state (dead: dead letters)",
            labels=["queue", "state"],
        )
        for row in rows:
            for state in STATES:
                jobs.add_metric([row["queue"], state], float(row[state]))
        yield jobs
        for column, name, text in GAUGES:
            family = GaugeMetricFamily(name, text, labels=["queue"])
            for row in rows:
                family.add_metric([row["queue"]], float(row[column]))
            yield family


def read_metrics(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """The rows of pyqueue.queue_metrics, one per queue."""
    return conn.cursor(row_factory=dict_row).execute(queries.QUEUE_METRICS).fetchall()


def exposition(rows: Rows) -> bytes:
    """These figures in the Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(lambda: rows))
    return generate_latest(registry)


def metrics_text(conninfo: str) -> str:
    """The queues' figures now, in the Prometheus text format."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return exposition(read_metrics(conn)).decode()
