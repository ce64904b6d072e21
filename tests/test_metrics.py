"""Metrics: the queue_metrics view (from psql), `pyqueue metrics`, the dashboard's
/metrics and a worker's metrics port, each parsed with prometheus_client's own
parser; and the Grafana dashboard in examples/ checked against what is exported.
"""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pyqueue import Worker
from pyqueue.cli import main
from pyqueue.dashboard import credentials, serve_in_background
from pyqueue.metrics import exposition
from pyqueue.worker.metrics import WorkerMetrics
from tests.helpers import claim, claim_one, complete, enqueue, expire_lease, fail, rows, running
from tests.test_dashboard_api import http

DASHBOARD = Path(__file__).resolve().parent.parent / "examples" / "grafana-dashboard.json"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def a_bit_of_everything(db) -> None:
    """Queue a: pending 3 (a retry in its backoff, one due in 2999, a replay due now),
    running 2 (one lease expired), completed 1, dead 1 (and 1 replayed); queue b:
    cancelled 1."""
    db.execute("SELECT pyqueue.configure_queue('a', backoff_base => '1 hour')")
    retried = enqueue(db, "a")
    c = claim_one(db, "a")
    assert c.id == retried and fail(db, c.id, c.lease_token) == "pending"
    enqueue(db, "a", run_at="2999-01-01")
    for _ in range(5):
        enqueue(db, "a", max_attempts=1)
    held = claim(db, "a", batch_size=5)
    complete(db, held[0].id, held[0].lease_token)
    fail(db, held[1].id, held[1].lease_token)
    fail(db, held[2].id, held[2].lease_token)
    db.execute("SELECT pyqueue.retry_dead(%s)", [held[2].id])
    expire_lease(db, held[3].id)  # after the last claim, which would recover it
    db.execute("SELECT pyqueue.cancel(pyqueue.enqueue('b', '{}'))")


def test_oldest_due_seconds_is_the_wait_of_the_oldest_due_job(db):
    job_id = enqueue(db, "late")
    db.execute(
        "UPDATE pyqueue.jobs SET run_at = now() - interval '90 seconds' WHERE id = %s", [job_id]
    )
    [row] = rows(db, "SELECT oldest_due_seconds FROM pyqueue.queue_metrics WHERE queue = 'late'")
    assert 90 <= row["oldest_due_seconds"] < 120


def test_pyqueue_metrics_prints_the_view_in_prometheus_text(dsn, db):
    a_bit_of_everything(db)
    result = CliRunner().invoke(main, ["--database-url", dsn, "metrics"])
    assert result.exit_code == 0, result.output
    found = samples(result.output)
    assert found[("pyqueue_jobs", (("queue", "a"), ("state", "pending")))] == 3
    assert found[("pyqueue_jobs", (("queue", "b"), ("state", "cancelled")))] == 1
    assert found[("pyqueue_jobs", (("queue", "a"), ("state", "dead")))] == 1
    assert found[("pyqueue_lease_expired_jobs", (("queue", "a"),))] == 1
    assert found[("pyqueue_completed_last_minute", (("queue", "a"),))] == 1
    assert found[("pyqueue_dead_last_minute", (("queue", "a"),))] == 2
    assert found[("pyqueue_jobs_due", (("queue", "a"),))] == 1
    # Every figure of the view, for each queue: one sample per queue and column.
    assert len(found) == 2 * (5 + 6)


def test_an_empty_database_exports_the_families_without_samples():
    text = exposition([]).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "pyqueue_jobs" in names and "pyqueue_oldest_due_age_seconds" in names
    assert samples(text) == {}


def test_the_dashboard_serves_metrics_behind_the_same_guard(dsn, db):
    enqueue(db, "a")
    token = "s3cret-token-for-the-test"
    with serve_in_background(dsn, creds=credentials(token, None)) as base:
        assert http(base + "/metrics").status == 401
        reply = http(base + "/metrics", headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert samples(reply.body)[("pyqueue_jobs", (("queue", "a"), ("state", "pending")))] == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def scraped_when(port: int, key: tuple, value: float) -> dict:
    """The worker's samples once `key` has reached `value`: the worker counts a
    job just after storing its outcome, so a waiting client may see it first."""
    deadline = time.monotonic() + 10
    while True:
        found = samples(scrape(port))
        if found.get(key) == value or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


COMPLETED_WORK = (
    "pyqueue_worker_handler_duration_seconds_count",
    (("outcome", "completed"), ("queue", "work")),
)


def test_a_worker_with_a_port_serves_its_own_metrics(dsn, db, queue):
    port = free_port()
    worker = Worker(poll_interval=0.05, maintenance_interval=None, metrics_port=port)

    @worker.handler("work")
    def work(payload, job):
        if payload.get("fail"):
            raise ValueError("no")
        time.sleep(0.02)
        return payload

    ids = queue.enqueue_many("work", [{"n": n} for n in range(5)])
    ids.append(queue.enqueue("work", {"fail": True}, max_attempts=1))
    with running(worker, dsn):
        for job_id in ids:
            queue.wait(job_id, timeout=30)
        # The worker's sessions end; each part connects again on its next call.
        db.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        late = queue.enqueue("work", {"n": 99})
        assert queue.wait(late, timeout=30).status == "completed"
        found = scraped_when(port, COMPLETED_WORK, 6)
    done = (
        "pyqueue_worker_handler_duration_seconds_count",
        (("outcome", "completed"), ("queue", "work")),
    )
    dead = (
        "pyqueue_worker_handler_duration_seconds_count",
        (("outcome", "dead"), ("queue", "work")),
    )
    assert (found[done], found[dead]) == (6, 1)
    fast = ("pyqueue_worker_handler_duration_seconds_bucket",
            (("le", "0.01"), ("outcome", "completed"), ("queue", "work")))  # fmt: skip
    assert found[fast] == 0  # each slept 20 ms
    assert found[("pyqueue_worker_claimed_jobs_total", ())] == 7
    claims = found[("pyqueue_worker_claims_total", ())]
    assert claims >= 2 and found[("pyqueue_worker_claim_batch_size_count", ())] == claims
    reconnects = {k[1]: v for k, v in found.items() if k[0] == "pyqueue_worker_reconnects_total"}
    assert reconnects.get((("connection", "main"),), 0) >= 1
    with pytest.raises(OSError):
        scrape(port)  # the server stopped with the worker


def test_the_grafana_dashboard_is_valid_and_plots_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 30
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels) >= 8
    exported = {f.name for f in text_string_to_metric_families(exposition([]).decode())}
    worker = WorkerMetrics()
    worker.claim(1)
    worker.reconnected("main")
    worker_text = generate_latest(worker.registry).decode()
    exported_samples = {
        s.name for f in text_string_to_metric_families(worker_text) for s in f.samples
    }
    # A labelled histogram has samples only once observed.
    durations = "pyqueue_worker_handler_duration_seconds"
    exported_samples |= {f"{durations}_bucket", f"{durations}_count", f"{durations}_sum"}
    known = exported | exported_samples
    for p in panels:
        assert {"type", "title", "gridPos", "targets"} <= set(p), p.get("title")
        assert set(p["gridPos"]) == {"h", "w", "x", "y"}
        for target in p["targets"]:
            used = set(re.findall(r"\bpyqueue_[a-z_]+", target["expr"]))
            assert used and used <= known, (p["title"], used - known)


def test_pyqueue_worker_serves_metrics_on_the_port_it_is_given(dsn, queue):
    import os
    import signal
    import subprocess
    import sys

    port = free_port()
    root = DASHBOARD.parent.parent
    worker = subprocess.Popen(
        [sys.executable, "-m", "pyqueue.cli", "--database-url", dsn, "worker",
         "examples.worker_app:worker", "--metrics-port", str(port)],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    try:
        job_id = queue.enqueue("emails.send", {"to": "ada@example.com"})
        assert queue.wait(job_id, timeout=30).status == "completed"
        key = (
            "pyqueue_worker_handler_duration_seconds_count",
            (("outcome", "completed"), ("queue", "emails.send")),
        )
        found = scraped_when(port, key, 1)
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
    assert found[key] == 1
    assert f"worker metrics on http://127.0.0.1:{port}/metrics" in output
