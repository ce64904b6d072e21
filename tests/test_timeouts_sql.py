"""Job timeouts through SQL: the database bounds every run, whatever its worker does.

The clock is simulated by moving a run's started_at (and its lease) into the past.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.helpers import (
    claim,
    claim_one,
    complete,
    dead,
    enqueue,
    fail,
    job,
    rows,
    scalar,
    sqlstate_of,
    writes_nothing,
)


def run_for(db, job_id: int, seconds: float) -> None:
    """Simulate the clock: the job's run started `seconds` ago, its lease as the claim set it."""
    db.execute(
        "UPDATE pyqueue.jobs SET started_at = now() - make_interval(secs => %s),"
        " locked_until = locked_until - make_interval(secs => %s) WHERE id = %s",
        [seconds, seconds, job_id],
    )


def test_a_job_takes_its_own_timeout_else_its_queues_fixed_at_enqueue(db):
    db.execute("SELECT pyqueue.configure_queue('reports', timeout => '5 minutes')")
    own = enqueue(db, "reports", timeout="10 seconds")
    inherited = enqueue(db, "reports")
    none = enqueue(db, "other")
    batch = scalar(db, "SELECT pyqueue.enqueue_batch('reports', ARRAY['{}'::jsonb])")
    batch_own = scalar(
        db, "SELECT pyqueue.enqueue_batch('reports', ARRAY['{}'::jsonb], timeout => '1 second')"
    )
    db.execute("SELECT pyqueue.configure_queue('reports', timeout => '1 hour')")
    assert job(db, own)["timeout"] == timedelta(seconds=10)
    assert job(db, inherited)["timeout"] == timedelta(minutes=5)  # as it was at enqueue
    assert job(db, none)["timeout"] is None
    assert job(db, batch)["timeout"] == timedelta(minutes=5)
    assert job(db, batch_own)["timeout"] == timedelta(seconds=1)


def test_a_lease_never_outlasts_the_timeout(db):
    job_id = enqueue(db, timeout="2 seconds")
    claimed = claim_one(db, lease="30 seconds")
    started = job(db, job_id)["started_at"]
    assert claimed.locked_until - started == timedelta(seconds=2)
    held = rows(
        db,
        "SELECT * FROM pyqueue.heartbeat(%s, %s, '30 seconds')",
        [[job_id], [claimed.lease_token]],
    )
    assert held == [{"heartbeat": job_id}]
    assert job(db, job_id)["locked_until"] - started == timedelta(seconds=2)


def test_past_its_timeout_nobody_holds_the_job(db):
    job_id = enqueue(db, timeout="1 second")
    token = claim_one(db).lease_token
    run_for(db, job_id, 1.5)
    before = job(db, job_id)
    assert rows(db, "SELECT * FROM pyqueue.heartbeat(%s, %s)", [[job_id], [token]]) == []
    assert complete(db, job_id, token, '{"late": true}') is False
    assert rows(db, "SELECT * FROM pyqueue.complete_batch(%s, %s)", [[job_id], [token]]) == []
    assert fail(db, job_id, token, "late failure") == "lost"
    assert scalar(db, "SELECT pyqueue.report_progress(%s, %s, 50)", [job_id, token]) is False
    assert job(db, job_id) == before


def test_recovery_fails_a_timed_out_run_by_its_backoff_while_its_worker_lives(db):
    job_id = enqueue(db, max_attempts=2, timeout="1 second", backoff_base="1 minute")
    token = claim_one(db).lease_token
    run_for(db, job_id, 1.5)
    assert scalar(db, "SELECT pyqueue.recover_expired()") == 1
    j = job(db, job_id)
    assert j["status"] == "pending"
    assert j["error"] == "timed out: attempt 1 ran longer than its timeout of 00:00:01"
    assert timedelta(seconds=30) <= j["run_at"] - j["failed_at"] <= timedelta(minutes=1)
    assert j["lease_token"] is None
    # The worker that still runs the handler finds the job gone.
    assert complete(db, job_id, token) is False

    db.execute("UPDATE pyqueue.jobs SET run_at = now() WHERE id = %s", [job_id])
    assert claim_one(db).attempt == 2
    run_for(db, job_id, 1.5)
    assert scalar(db, "SELECT pyqueue.recover_expired()") == 1
    d = dead(db, job_id)
    assert d["error"] == "timed out: attempt 2 ran longer than its timeout of 00:00:01"
    assert d["timeout"] == timedelta(seconds=1)


def test_a_run_within_its_timeout_is_left_alone(db):
    job_id = enqueue(db, timeout="1 hour")
    token = claim_one(db).lease_token
    # A minute into its run, its worker heartbeating: nothing to recover.
    db.execute("UPDATE pyqueue.jobs SET started_at = now() - interval '1 minute' WHERE id = %s",
               [job_id])  # fmt: skip
    assert scalar(db, "SELECT pyqueue.recover_expired()") == 0
    assert complete(db, job_id, token, '{"ok": true}') is True


def test_claim_fails_timed_out_runs_on_its_way(db):
    job_id = enqueue(db, "slow", timeout="1 second", max_attempts=1)
    claim_one(db, "slow")
    run_for(db, job_id, 2)
    assert claim(db, "other") == []  # any claim recovers, whatever its queues
    assert dead(db, job_id)["error"].startswith("timed out: attempt 1")


def test_a_replayed_dead_letter_keeps_its_timeout(db):
    job_id = enqueue(db, timeout="3 seconds", max_attempts=1)
    c = claim_one(db)
    assert fail(db, job_id, c.lease_token) == "dead"
    replay = scalar(db, "SELECT pyqueue.retry_dead(%s)", [job_id])
    assert job(db, replay)["timeout"] == timedelta(seconds=3)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("SELECT pyqueue.enqueue('q', '{}', timeout => '0 seconds')", "timeout must be positive"),
        ("SELECT pyqueue.enqueue('q', '{}', timeout => '-1 seconds')", "timeout must be positive"),
        (
            "SELECT pyqueue.enqueue_batch('q', ARRAY['{}'::jsonb], timeout => '-1 seconds')",
            "timeout must be positive",
        ),
        (
            "SELECT pyqueue.configure_queue('q', timeout => '0 seconds')",
            "timeout must be positive",
        ),
    ],
)
def test_a_timeout_that_is_not_a_positive_interval_is_refused_by_name(db, call, message):
    with writes_nothing(db):
        error = sqlstate_of(db, call)
    assert error.sqlstate == "22023"
    assert message in error.diag.message_primary
