"""maintain() through SQL: bounded housekeeping, one pass at a time across the fleet."""

from __future__ import annotations

import psycopg
import pytest

from tests.helpers import (
    claim_one,
    complete,
    counts,
    enqueue,
    expire_lease,
    fail,
    scalar,
    sqlstate_of,
)


def maintain(db, query: str = "SELECT pyqueue.maintain()", params=None) -> dict:
    found = scalar(db, query, params)
    assert isinstance(found, dict)
    return found


def finish(db, queue: str, *, ago: str, how: str = "completed", count: int = 1) -> list[int]:
    """Jobs on `queue` completed (or cancelled) `ago` (an interval), as the clock would have it."""
    ids = []
    for _ in range(count):
        job_id = enqueue(db, queue)
        if how == "completed":
            c = claim_one(db, queue)
            complete(db, job_id, c.lease_token)
        else:
            scalar(db, "SELECT pyqueue.cancel(%s)", [job_id])
        ids.append(job_id)
    db.execute(
        "UPDATE pyqueue.jobs SET finished_at = now() - %s::interval WHERE id = ANY(%s)", [ago, ids]
    )
    return ids


def bury(db, queue: str, *, ago: str) -> int:
    job_id = enqueue(db, queue, max_attempts=1)
    c = claim_one(db, queue)
    assert fail(db, job_id, c.lease_token) == "dead"
    db.execute(
        "UPDATE pyqueue.dead_jobs SET dead_at = now() - %s::interval WHERE id = %s", [ago, job_id]
    )
    return job_id


def live_ids(db) -> set[int]:
    return {r[0] for r in db.execute("SELECT id FROM pyqueue.all_jobs").fetchall()}


def test_a_pass_deletes_what_retention_no_longer_keeps_and_says_what_it_did(db):
    db.execute("SELECT pyqueue.configure_queue('short', retention => '1 hour')")
    old = finish(db, "q", ago="8 days") + finish(db, "q", ago="8 days", how="cancelled")
    kept = finish(db, "q", ago="6 days") + finish(db, "short", ago="50 minutes")
    short_old = finish(db, "short", ago="2 hours")
    dead_old, dead_recent = bury(db, "q", ago="31 days"), bury(db, "q", ago="29 days")
    pending = enqueue(db, "q")

    result = maintain(db)
    assert result == {
        "ran": True,
        "recovered": 0,
        "fired": 0,
        "purged": 3,
        "dead_purged": 1,
        "more": False,
    }
    assert live_ids(db) == {*kept, dead_recent, pending}
    assert not live_ids(db) & {*old, *short_old, dead_old}
    last = db.execute("SELECT last_run_at IS NOT NULL, last_result FROM pyqueue.maintenance")
    assert last.fetchone() == (True, result)


def test_dead_letters_follow_their_queues_dead_retention_and_replays_its_retention(db):
    db.execute("SELECT pyqueue.configure_queue('brief', dead_retention => '1 day')")
    bury(db, "brief", ago="2 days")
    kept = bury(db, "q", ago="2 days")
    replayed = bury(db, "q", ago="1 day")
    scalar(db, "SELECT pyqueue.retry_dead(%s)", [replayed])
    db.execute(
        "UPDATE pyqueue.dead_jobs SET retried_at = now() - interval '8 days' WHERE id = %s",
        [replayed],
    )
    assert maintain(db)["dead_purged"] == 2
    assert [r[0] for r in db.execute("SELECT id FROM pyqueue.dead_jobs")] == [kept]


def test_a_backlog_goes_over_several_bounded_passes(db):
    finish(db, "q", ago="30 days", count=7)
    passes = []
    while True:
        result = maintain(db, "SELECT pyqueue.maintain(max_rows => 3)")
        passes.append(result["purged"])
        if not result["more"]:
            break
    assert passes == [3, 3, 1]
    assert counts(db) == (0, 0)


def test_maintain_recovers_expired_leases(db):
    job_id = enqueue(db)
    claim_one(db)
    expire_lease(db, job_id)
    assert maintain(db)["recovered"] == 1
    assert scalar(db, "SELECT status FROM pyqueue.jobs WHERE id = %s", [job_id]) == "pending"


def test_one_pass_at_a_time_across_the_fleet(dsn, db):
    finish(db, "q", ago="30 days", count=2)
    with psycopg.connect(dsn) as other:
        # Another session's pass, its transaction still open. A second pass
        # must not wait for it (a lock wait here fails the test, not hangs it).
        assert other.execute("SELECT pyqueue.maintain(max_rows => 1)").fetchone()[0]["ran"]
        db.execute("SET lock_timeout = '2s'")
        assert maintain(db) == {"ran": False, "reason": "another session is maintaining"}
        other.commit()
    assert maintain(db)["purged"] == 1


def test_every_skips_a_pass_when_the_last_one_is_recent(db):
    assert maintain(db)["ran"] is True
    skipped = maintain(db, "SELECT pyqueue.maintain(every => '1 hour')")
    assert skipped == {"ran": False, "reason": "the last pass started less than 01:00:00 ago"}
    assert maintain(db, "SELECT pyqueue.maintain(every => '0 seconds')")["ran"] is True
    assert maintain(db)["ran"] is True  # without `every`, a pass always runs


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("SELECT pyqueue.maintain(every => '-1 second')", "every must be zero or positive"),
        ("SELECT pyqueue.maintain(max_rows => 0)", "max_rows must be between 1 and 1000000"),
        ("SELECT pyqueue.maintain(max_rows => NULL)", "max_rows must not be NULL"),
        (
            "SELECT pyqueue.configure_queue('q', dead_retention => '-1 day')",
            "dead_retention must be zero or positive",
        ),
    ],
)
def test_bad_arguments_are_refused_by_name(db, call, message):
    error = sqlstate_of(db, call)
    assert error.sqlstate == "22023"
    assert message in error.diag.message_primary
    assert scalar(db, "SELECT last_run_at FROM pyqueue.maintenance") is None
