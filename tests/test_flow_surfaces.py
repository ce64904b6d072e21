"""Flow control from Python, the CLI and the dashboard: each calls the SQL of
sql/22_flow.sql and sql/12_unique.sql, and shows what it did."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

import pyqueue
from pyqueue.cli import main
from pyqueue.errors import InvalidArgument
from tests.helpers import claim, row
from tests.test_dashboard_api import base, csrf_token, http  # noqa: F401 (base is a fixture)

Conn = psycopg.Connection[Any]


def test_client_limits_pause_and_modes(db: Conn, queue: pyqueue.Queue) -> None:
    queue.enqueue_many("q", [{}] * 5)
    queue.configure_queue(
        "q", concurrency=2, rate_limit=10, rate_period=timedelta(minutes=1), unique_mode="active"
    )
    settings = row(db, "SELECT * FROM pyqueue.queue_settings('q')")
    assert (settings["concurrency"], settings["rate_limit"], settings["unique_mode"]) == (
        2,
        10,
        "active",
    )
    assert len(claim(db, "q", 5)) == 2
    since = queue.pause_queue("q")
    assert row(db, "SELECT paused_at FROM pyqueue.queues WHERE name = 'q'")["paused_at"] == since
    assert queue.resume_queue("q") is True
    assert queue.resume_queue("q") is False

    first = queue.enqueue("k", {}, idempotency_key="a", unique_mode="pending")
    assert queue.enqueue("k", {}, idempotency_key="a", unique_mode="pending") == first
    ids = queue.enqueue_many(
        "k",
        [1, 2],
        idempotency_keys=["b", "b"],
        unique_mode="debounce",
        unique_period=timedelta(seconds=30),
    )
    assert ids[0] == ids[1]
    assert queue.get_job(ids[0]).payload == 2


def test_client_bad_mode_is_an_invalid_argument(queue: pyqueue.Queue) -> None:
    with pytest.raises(InvalidArgument, match="unique_mode"):
        queue.enqueue("q", {}, idempotency_key="a", unique_mode="never")
    with pytest.raises(InvalidArgument, match="concurrency"):
        queue.configure_queue("*", concurrency=3)


def test_cli_pause_resume_and_limit(db: Conn, dsn: str) -> None:
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(main, ["--database-url", dsn, *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert "paused since" in cli("pause", "mail")
    assert row(db, "SELECT paused FROM pyqueue.queue_stats WHERE queue = 'mail'")["paused"]
    assert cli("resume", "mail").strip() == "queue mail resumed"
    assert cli("resume", "mail").strip() == "queue mail was not paused"
    cli("limit", "mail", "--concurrency", "3", "--rate-limit", "5", "--rate-period", "60")
    settings = row(db, "SELECT * FROM pyqueue.queues WHERE name = 'mail'")
    assert (settings["concurrency"], settings["rate_limit"]) == (3, 5)
    assert settings["rate_period"] == timedelta(minutes=1)
    job_id = int(cli("enqueue", "mail", "{}", "--idempotency-key", "x", "--unique-mode", "active"))
    assert int(cli("enqueue", "mail", "{}", "--idempotency-key", "x")) == job_id
    bad = runner.invoke(main, ["--database-url", dsn, "limit", "mail", "--rate-limit", "-1"])
    assert bad.exit_code == 1 and "rate_limit" in bad.output


def test_dashboard_pause_and_resume_need_csrf(db: Conn, base: str) -> None:  # noqa: F811
    db.execute("SELECT pyqueue.enqueue('mail', '{}')")
    url = f"{base}/queues/mail/pause"
    token = csrf_token(base)
    assert http(url, method="POST", data={}).status == 403
    assert http(url, method="POST", data={"csrf_token": "forged"}).status == 403
    cross_site = http(
        url, method="POST", data={"csrf_token": token}, headers={"Origin": "http://evil.test"}
    )
    assert cross_site.status == 403
    assert not row(db, "SELECT paused FROM pyqueue.queue_stats WHERE queue = 'mail'")["paused"]

    paused = http(url, method="POST", data={"csrf_token": token}, headers={"Origin": base})
    assert paused.status == 303
    assert http(f"{base}/api/queues").json()["queues"][0]["paused"] is True
    page = http(base + "/").body
    assert 'action="/queues/mail/resume"' in page and "badge-paused" in page

    headers = {"X-CSRF-Token": token}
    resumed = http(f"{base}/api/queues/mail/resume", method="POST", headers=headers)
    assert resumed.json() == {"queue": "mail", "resumed": True}
    assert http(f"{base}/api/queues").json()["queues"][0]["paused"] is False
    bad = http(f"{base}/api/queues/bad%20name/pause", method="POST", headers=headers)
    assert bad.status == 400
    assert http(url, method="GET").status == 405
