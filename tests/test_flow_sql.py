"""Flow control from SQL, as a psql user calls it: concurrency and rate limits,
pause and resume, claim_wait, and the uniqueness modes of idempotency keys."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.helpers import (
    claim,
    complete,
    enqueue,
    expire_lease,
    fail,
    row,
    rows,
    scalar,
    sqlstate_of,
)

Conn = psycopg.Connection[Any]


def fill(db: Conn, queue: str = "q", n: int = 20) -> None:
    db.execute("SELECT pyqueue.enqueue_batch(%s, array_fill('{}'::jsonb, ARRAY[%s]))", [queue, n])


def running(db: Conn, queue: str = "q") -> int:
    return int(
        scalar(
            db, "SELECT count(*) FROM pyqueue.jobs WHERE queue = %s AND status = 'running'", [queue]
        )
    )


# -- The "Done when", exactly ------------------------------------------


def test_done_when_concurrency_two(db: Conn) -> None:
    fill(db)
    db.execute("SELECT pyqueue.configure_queue('q', concurrency => 2)")
    first = claim(db, "q", 10)
    assert len(first) == 2
    assert claim(db, "q", 10) == []
    assert complete(db, first[0].id, first[0].lease_token)
    assert len(claim(db, "q", 10)) == 1


def test_done_when_paused_until_resumed(db: Conn) -> None:
    fill(db)
    db.execute("SELECT pyqueue.pause_queue('q')")
    assert claim(db, "q", 10) == []
    assert claim(db, "q", 10) == []
    assert scalar(db, "SELECT pyqueue.resume_queue('q')") is True
    assert len(claim(db, "q", 10)) == 10


def test_done_when_rate_three_per_ten_seconds(db: Conn) -> None:
    fill(db)
    db.execute("SELECT pyqueue.configure_queue('q', rate_limit => 3, rate_period => '10 seconds')")
    assert len(claim(db, "q", 10)) == 3
    assert claim(db, "q", 10) == []


# -- Concurrency ----------------------------------------------------------------


def test_concurrency_frees_on_every_way_out_of_running(db: Conn) -> None:
    """fail, cancel, lease recovery and release each free a slot."""
    fill(db)
    db.execute("SELECT pyqueue.configure_queue('q', concurrency => 3, max_attempts => 5)")
    a, b, c = claim(db, "q", 10)
    assert claim(db, "q", 10) == []
    assert fail(db, a.id, a.lease_token) == "pending"
    b_cancelled = scalar(db, "SELECT pyqueue.cancel(%s)", [b.id])
    assert b_cancelled is True
    expire_lease(db, c.id)
    db.execute("SELECT pyqueue.recover_expired()")
    assert running(db) == 0
    d, *_ = claim(db, "q", 10)
    assert running(db) == 3
    db.execute("SELECT pyqueue.release(%s, %s)", [[d.id], [d.lease_token]])
    assert [j.id for j in claim(db, "q", 10)] == [d.id]


def test_limits_are_per_queue_in_a_multi_queue_claim(db: Conn) -> None:
    fill(db, "limited", 10)
    fill(db, "free", 10)
    db.execute("SELECT pyqueue.configure_queue('limited', concurrency => 2)")
    got = claim(db, ["limited", "free", "limited"], 20)
    by_queue = {q: sum(1 for j in got if j.queue == q) for q in ("limited", "free")}
    assert by_queue == {"limited": 2, "free": 10}


def test_zero_removes_a_limit(db: Conn) -> None:
    fill(db)
    db.execute("SELECT pyqueue.configure_queue('q', concurrency => 1)")
    assert len(claim(db, "q", 5)) == 1
    settings = row(db, "SELECT * FROM pyqueue.configure_queue('q', concurrency => 0)")
    assert settings["concurrency"] is None
    db.execute("DELETE FROM pyqueue.queue_flow")
    assert len(claim(db, "q", 5)) == 5
    # an unlimited queue's claim takes no flow lock and writes no ledger
    assert scalar(db, "SELECT count(*) FROM pyqueue.queue_flow") == 0


def test_a_second_limited_claim_waits_for_the_first(db: Conn, dsn: str) -> None:
    fill(db)
    db.execute("SELECT pyqueue.configure_queue('q', concurrency => 3)")
    with psycopg.connect(dsn) as first:
        got = first.execute(
            "SELECT count(*) FROM pyqueue.claim_batch(ARRAY['q'], 'a', 2)"
        ).fetchone()
        assert got == (2,)
        with psycopg.connect(dsn, autocommit=True) as second:
            second.execute("SET lock_timeout = '200ms'")
            error = sqlstate_of(second, "SELECT * FROM pyqueue.claim_batch(ARRAY['q'], 'b', 5)")
            assert error.sqlstate == "55P03"  # waiting for the first claim's lock
        first.commit()
    assert len(claim(db, "q", 5)) == 1


def test_repeatable_read_claim_cannot_count_stale(db: Conn, dsn: str) -> None:
    fill(db)
    db.execute("SELECT pyqueue.configure_queue('q', concurrency => 2)")
    with psycopg.connect(dsn) as stale:
        stale.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        stale.execute("SELECT 1 FROM pyqueue.jobs LIMIT 1")  # snapshot taken
        assert len(claim(db, "q", 2)) == 2
        with pytest.raises(psycopg.errors.SerializationFailure):
            stale.execute("SELECT * FROM pyqueue.claim_batch(ARRAY['q'], 'rr', 2)")
    assert running(db) == 2


# -- Claims ahead of free slots (a worker's prefetch) ------------------------------


def claim_ahead(db: Conn, queues: list[str], batch_size: int, ahead: int) -> list[Any]:
    return rows(
        db,
        "SELECT id, queue FROM pyqueue.claim_batch(%s, 'w', %s, ahead => %s)",
        [queues, batch_size, ahead],
    )


def test_an_unlimited_queue_gives_jobs_ahead(db: Conn) -> None:
    fill(db)
    assert len(claim_ahead(db, ["q"], 10, 7)) == 10
    assert len(claim_ahead(db, ["q"], 10, 10)) == 10


@pytest.mark.parametrize(
    "limit",
    ["concurrency => 100", "rate_limit => 100, rate_period => '1 minute'"],
    ids=["concurrency", "rate"],
)
def test_a_limited_queue_gives_none_ahead(db: Conn, limit: str) -> None:
    """Jobs ahead would hold the limit's budget in one worker's memory: a claim
    with a limited queue takes only the jobs for free slots, however loose the limit."""
    fill(db, "limited", 20)
    fill(db, "free", 20)
    db.execute(f"SELECT pyqueue.configure_queue('limited', {limit})")
    assert len(claim_ahead(db, ["limited"], 10, 7)) == 3
    assert claim_ahead(db, ["limited"], 10, 10) == []
    # With an unlimited queue beside it: still only the jobs for free slots.
    assert len(claim_ahead(db, ["free", "limited"], 10, 6)) == 4
    assert len(claim_ahead(db, ["free"], 10, 6)) == 10


def test_no_job_with_a_timeout_is_taken_ahead(db: Conn) -> None:
    """Its run is timed from the claim: waiting in a worker it would spend its timeout."""
    timed = [enqueue(db, "q", timeout=timedelta(seconds=10)) for _ in range(4)]
    untimed = [enqueue(db, "q") for _ in range(4)]
    # Of the 6 first in line, the first 2 fill free slots (any job); of the 4
    # ahead, only the untimed ones are taken.
    got = [j["id"] for j in claim_ahead(db, ["q"], 6, 4)]
    assert got == timed[:2] + untimed[:2]
    # The timed jobs passed over are still pending, first in line.
    assert [j["id"] for j in claim_ahead(db, ["q"], 6, 0)] == timed[2:] + untimed[2:]


def test_a_paused_queue_does_not_stop_claims_ahead_of_another(db: Conn) -> None:
    fill(db, "paused", 5)
    fill(db, "free", 20)
    db.execute("SELECT pyqueue.pause_queue('paused')")
    got = claim_ahead(db, ["paused", "free"], 10, 8)
    assert [j["queue"] for j in got] == ["free"] * 10


# -- Rate limits ----------------------------------------------------------------


def test_rate_budget_returns_as_starts_leave_the_window(db: Conn) -> None:
    fill(db)
    db.execute("SELECT pyqueue.configure_queue('q', rate_limit => 2, rate_period => '1 second')")
    assert len(claim(db, "q", 10)) == 2
    assert claim(db, "q", 10) == []
    wait = scalar(db, "SELECT extract(epoch FROM pyqueue.claim_wait(ARRAY['q']))")
    assert 0 < wait <= 1
    time.sleep(float(wait) + 0.05)
    assert len(claim(db, "q", 10)) == 2


def test_rate_window_is_sliding(db: Conn) -> None:
    """A start counts for a full period after it, wherever the period begins."""
    fill(db)
    db.execute("SELECT pyqueue.configure_queue('q', rate_limit => 3, rate_period => '1 hour')")
    db.execute(
        "INSERT INTO pyqueue.queue_flow (queue, starts) VALUES"
        " ('q', ARRAY[now() - interval '59 minutes', now() - interval '61 minutes'])"
    )
    assert len(claim(db, "q", 10)) == 2  # one of the three is still in the window
    starts = scalar(db, "SELECT cardinality(starts) FROM pyqueue.queue_flow WHERE queue = 'q'")
    assert starts == 3  # the start older than the window is dropped


def test_rate_and_concurrency_together(db: Conn) -> None:
    fill(db)
    db.execute(
        "SELECT pyqueue.configure_queue('q', concurrency => 1, rate_limit => 2,"
        " rate_period => '1 hour')"
    )
    (a,) = claim(db, "q", 10)
    complete(db, a.id, a.lease_token)
    (b,) = claim(db, "q", 10)
    complete(db, b.id, b.lease_token)
    assert claim(db, "q", 10) == []


BAD_SETTINGS = [
    ("configure_queue('*', concurrency => 2)", "'*'"),
    ("configure_queue('q', concurrency => -1)", "concurrency"),
    ("configure_queue('q', concurrency => 100001)", "concurrency"),
    ("configure_queue('q', rate_limit => 10001, rate_period => '1s')", "rate_limit"),
    ("configure_queue('q', rate_limit => 1, rate_period => '-1s')", "rate_period"),
    ("configure_queue('q', unique_mode => 'sometimes')", "unique_mode"),
    ("configure_queue('q', unique_period => '0s')", "unique_period"),
    ("configure_queue('q', rate_limit => 3)", "rate_period"),
    ("configure_queue('q', rate_period => '1 minute')", "rate_limit"),
    ("pause_queue('bad name')", "queue"),
    ("resume_queue(NULL)", "queue"),
    ("claim_wait('{}')", "queues"),
]


def test_bad_flow_settings_are_refused(db: Conn) -> None:
    before = rows(db, "SELECT * FROM pyqueue.queues ORDER BY name")
    for call, words in BAD_SETTINGS:
        error = sqlstate_of(db, f"SELECT pyqueue.{call}")
        assert error.sqlstate == "22023", call
        assert words in str(error), (call, str(error))
    assert rows(db, "SELECT * FROM pyqueue.queues ORDER BY name") == before


# -- claim_wait -------------------------------------------------------------------


def test_claim_wait(db: Conn) -> None:
    fill(db, "a", 5)
    fill(db, "b", 5)
    wait = "SELECT pyqueue.claim_wait(%s::text[])"
    assert scalar(db, wait, [["a"]]) is None  # no limit: wait for a NOTIFY
    db.execute("SELECT pyqueue.configure_queue('a', concurrency => 1)")
    assert scalar(db, wait, [["a"]]) is None  # room
    claim(db, "a", 5)
    assert scalar(db, wait, [["a"]]).total_seconds() == 3600  # full: a completion frees it
    assert scalar(db, wait, [["a", "b"]]) is None  # b has no limit
    db.execute("SELECT pyqueue.pause_queue('b')")
    assert scalar(db, wait, [["a", "b"]]).total_seconds() == 3600


# -- Pause ------------------------------------------------------------------------


def test_pause_keeps_enqueue_and_running_jobs(db: Conn) -> None:
    fill(db, "q", 2)
    (a,) = claim(db, "q", 1)
    since = scalar(db, "SELECT pyqueue.pause_queue('q')")
    assert scalar(db, "SELECT pyqueue.pause_queue('q')") == since  # the first time stays
    enqueue(db, "q")
    assert complete(db, a.id, a.lease_token)
    assert claim(db, "q", 10) == []
    stats = row(db, "SELECT * FROM pyqueue.queue_stats WHERE queue = 'q'")
    assert stats["paused"] is True and stats["pending"] == 2
    assert scalar(db, "SELECT pyqueue.resume_queue('q')") is True
    assert scalar(db, "SELECT pyqueue.resume_queue('q')") is False
    assert row(db, "SELECT * FROM pyqueue.queue_stats WHERE queue = 'q'")["paused"] is False
    db.execute("SELECT pyqueue.pause_queue('empty')")
    stats = row(db, "SELECT * FROM pyqueue.queue_stats WHERE queue = 'empty'")
    assert stats["paused"] is True and stats["pending"] == 0  # a row without jobs


# -- Uniqueness modes ---------------------------------------------------------------


def keyed(db: Conn, key: str = "k", payload: str = "{}", **options: Any) -> int:
    return enqueue(db, "q", payload, idempotency_key=key, **options)


def test_until_purged_is_the_default(db: Conn) -> None:
    first = keyed(db)
    (job,) = claim(db, "q", 1)
    complete(db, job.id, job.lease_token)
    assert keyed(db) == first
    other = enqueue(db, "other", idempotency_key="k", unique_mode="pending")
    assert other != first
    assert enqueue(db, "other", idempotency_key="k", unique_mode="pending") == other
    assert keyed(db, unique_mode="pending") not in (first, other)  # first is not pending


def test_pending_mode(db: Conn) -> None:
    first = keyed(db, unique_mode="pending")
    assert keyed(db, unique_mode="pending") == first
    claim(db, "q", 1)
    second = keyed(db, unique_mode="pending")
    assert second != first
    # the first job keeps its key, released
    old = row(db, "SELECT * FROM pyqueue.jobs WHERE id = %s", [first])
    assert old["idempotency_key"] == "k" and old["key_released_at"] is not None


def test_active_mode(db: Conn) -> None:
    first = keyed(db, unique_mode="active")
    (job,) = claim(db, "q", 1)
    assert keyed(db, unique_mode="active") == first
    complete(db, job.id, job.lease_token)
    assert keyed(db, unique_mode="active") != first


def test_throttle_mode(db: Conn) -> None:
    first = keyed(db, unique_mode="throttle", unique_period="1 hour")
    (job,) = claim(db, "q", 1)
    complete(db, job.id, job.lease_token)
    assert keyed(db, unique_mode="throttle", unique_period="1 hour") == first
    db.execute("UPDATE pyqueue.jobs SET created_at = created_at - interval '2 hours'")
    assert keyed(db, unique_mode="throttle", unique_period="1 hour") != first


def test_debounce_mode(db: Conn) -> None:
    first = keyed(db, payload='{"n": 1}', unique_mode="debounce", unique_period="10 minutes")
    before = row(db, "SELECT run_at, created_at FROM pyqueue.jobs WHERE id = %s", [first])
    assert (before["run_at"] - before["created_at"]).total_seconds() == 600
    time.sleep(0.01)
    again = keyed(db, payload='{"n": 2}', unique_mode="debounce", unique_period="10 minutes")
    assert again == first
    after = row(db, "SELECT run_at, payload FROM pyqueue.jobs WHERE id = %s", [first])
    assert after["payload"] == {"n": 2} and after["run_at"] > before["run_at"]
    db.execute("UPDATE pyqueue.jobs SET run_at = now()")
    claim(db, "q", 1)
    assert keyed(db, unique_mode="debounce", unique_period="10 minutes") != first


def test_queue_default_mode(db: Conn) -> None:
    db.execute("SELECT pyqueue.configure_queue('q', unique_mode => 'pending')")
    first = keyed(db)
    claim(db, "q", 1)
    assert keyed(db) != first
    # the call's mode wins over the queue's
    assert keyed(db, unique_mode="until_purged") == keyed(db, unique_mode="active")


def test_throttle_without_a_period_is_refused(db: Conn) -> None:
    error = sqlstate_of(
        db, "SELECT pyqueue.enqueue('q', '{}', idempotency_key => 'k', unique_mode => 'throttle')"
    )
    assert error.sqlstate == "22023" and "unique_period" in str(error)
    assert scalar(db, "SELECT count(*) FROM pyqueue.jobs") == 0


def test_enqueue_batch_with_a_mode(db: Conn) -> None:
    ids = [
        r[0]
        for r in db.execute(
            "SELECT pyqueue.enqueue_batch('q', ARRAY['1', '2', '3', '4']::jsonb[],"
            " idempotency_keys => ARRAY['b', 'a', NULL, 'b'], unique_mode => 'debounce',"
            " unique_period => '1 minute')"
        )
    ]
    assert ids[0] == ids[3] and len(set(ids)) == 3
    assert scalar(db, "SELECT payload FROM pyqueue.jobs WHERE id = %s", [ids[0]]) == 4
