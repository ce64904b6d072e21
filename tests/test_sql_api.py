"""Every job transition through plain SQL calls, as psql or another language makes them.

Each test gets a fresh migrated database (the `db` fixture, autocommit). Where a
test needs time to pass (a backoff, a lease), it either uses a tiny interval and
sleeps briefly, or moves the job's timestamps into the past ("simulating the clock").
"""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import timedelta

import psycopg
import pytest

from tests.helpers import (
    claim,
    claim_one,
    complete,
    counts,
    dead,
    enqueue,
    expire_lease,
    fail,
    job,
    make_due,
    psql_conninfo,
    row,
    rows,
    scalar,
    sqlstate_of,
    status,
    writes_nothing,
)

# ---------------------------------------------------------------- enqueue


def test_enqueue_adds_a_pending_job_with_the_default_options(db):
    job_id = enqueue(db, "emails", '{"to": "a@example.com"}')
    j = job(db, job_id)
    assert j["queue"] == "emails"
    assert j["status"] == "pending"
    assert j["payload"] == {"to": "a@example.com"}
    assert j["attempt"] == 0
    assert j["max_attempts"] == 3  # the built-in default: 3 attempts in all
    assert j["priority"] == 0
    assert j["lease_token"] is None
    assert j["run_at"] <= scalar(db, "SELECT now()")


def test_enqueue_with_delay_or_run_at_is_not_claimable_before_it_is_due(db):
    delayed = enqueue(db, payload="1", delay="1 hour")
    later = enqueue(db, payload="2", run_at="2999-01-01T00:00:00Z")
    now = scalar(db, "SELECT now()")
    assert job(db, delayed)["run_at"] > now + timedelta(minutes=59)
    assert job(db, later)["run_at"].year == 2999
    assert claim(db, batch_size=10) == []
    # Once due (clock moved), the delayed job is claimable.
    make_due(db, delayed)
    assert [c.id for c in claim(db, batch_size=10)] == [delayed]


def _enqueue_batch_with(db, queue, payloads, keys=None, **options):
    """pyqueue.enqueue_batch(queue, payloads, idempotency_keys => keys, <options> => ...)."""
    named = "".join(f", {name} => %({name})s" for name in options)
    query = (
        "SELECT * FROM pyqueue.enqueue_batch(%(queue)s, %(payloads)s::jsonb[],"
        f" idempotency_keys => %(keys)s::text[]{named})"
    )
    params = {"queue": queue, "payloads": payloads, "keys": keys, **options}
    return [r[0] for r in db.execute(query, params)]


# With keys and without, enqueue_batch takes two different inserts.
@pytest.mark.parametrize("keyed", [False, True], ids=["without keys", "with keys"])
def test_enqueue_batch_gives_every_job_its_options(db, keyed):
    def batch(prefix, **options):
        keys = [f"{prefix}-{n}" for n in range(2)] if keyed else None
        return _enqueue_batch_with(db, "q", ["1", "2"], keys, **options)

    delayed = batch(
        "delayed", delay="1 hour", priority=3, max_attempts=5,
        backoff_base="2 seconds", backoff_max="1 minute",
    )  # fmt: skip
    scheduled = batch("scheduled", run_at="2999-01-01T00:00:00Z")
    now = scalar(db, "SELECT now()")
    for job_id in delayed:
        j = job(db, job_id)
        assert now + timedelta(minutes=59) < j["run_at"] <= now + timedelta(hours=1)
        assert (j["priority"], j["max_attempts"]) == (3, 5)
        assert (j["backoff_base"], j["backoff_max"]) == (timedelta(seconds=2), timedelta(minutes=1))
    assert [job(db, i)["run_at"].year for i in scheduled] == [2999, 2999]
    assert claim(db, batch_size=10) == []


def test_claim_order_is_priority_then_run_at_then_id(db):
    low = enqueue(db, payload="1", priority=0)
    high_late = enqueue(db, payload="2", priority=10)
    mid = enqueue(db, payload="3", priority=5)
    high_early = enqueue(db, payload="4", priority=10, run_at="2000-01-01T00:00:00Z")
    high_last = enqueue(db, payload="5", priority=10)
    negative = enqueue(db, payload="6", priority=-3)
    order = [c.id for c in claim(db, batch_size=2)] + [c.id for c in claim(db, batch_size=10)]
    assert order == [high_early, high_late, high_last, mid, low, negative]


def test_a_claim_of_one_takes_the_earliest_due_job_of_a_priority_whatever_its_id(db):
    # The job due first was enqueued last: a claim cut to one job by id would miss it.
    for n in range(3):
        enqueue(db, payload=str(n))
    earliest = enqueue(db, payload="3", run_at="2000-01-01T00:00:00Z")
    assert claim_one(db).id == earliest


def test_claim_merges_several_queues_by_priority_and_ignores_other_queues(db):
    a_low = enqueue(db, "a", "1", priority=1)
    b_high = enqueue(db, "b", "2", priority=9)
    enqueue(db, "c", "3", priority=100)
    a_high = enqueue(db, "a", "4", priority=9)
    found = claim(db, ["a", "b"], batch_size=2)
    assert [c.id for c in found] == [b_high, a_high]
    assert [c.id for c in claim(db, ["a", "b"], batch_size=10)] == [a_low]
    assert claim(db, ["a", "b"], batch_size=10) == []
    assert status(db, a_low) == "running"
    assert (
        scalar(db, "SELECT count(*) FROM pyqueue.jobs WHERE queue = 'c' AND status = 'pending'")
        == 1
    )


def test_claim_leases_the_job_and_counts_the_attempt(db):
    job_id = enqueue(db, payload='{"n": 1}', max_attempts=4)
    c = claim_one(db, lease="5 minutes")
    assert (c.id, c.queue, c.payload, c.attempt, c.max_attempts) == (job_id, "q", {"n": 1}, 1, 4)
    assert isinstance(c.lease_token, uuid.UUID)
    j = job(db, job_id)
    assert j["status"] == "running"
    assert j["attempt"] == 1
    assert j["lease_token"] == c.lease_token
    assert j["worker"] == "w1"
    assert j["started_at"] is not None
    assert j["locked_until"] == c.locked_until
    assert c.locked_until - j["started_at"] == timedelta(minutes=5)
    # A running job is not claimed twice.
    assert claim(db, batch_size=10) == []


def test_a_new_claim_starts_without_the_progress_of_the_last_attempt(db):
    job_id = enqueue(db)
    held = claim_one(db)
    # The attempt that reported progress ends by failing, then by its lease running out.
    for end in ("failed", "lease expired"):
        report = "SELECT pyqueue.report_progress(%s, %s, 60, 'most of it')"
        assert scalar(db, report, [job_id, held.lease_token]) is True
        if end == "failed":
            assert fail(db, job_id, held.lease_token) == "pending"
            make_due(db, job_id)
        else:
            expire_lease(db, job_id)
        held = claim_one(db)
        assert held.id == job_id
        j = job(db, job_id)
        assert (j["progress"], j["progress_message"]) == (None, None), end


def test_claim_respects_batch_size(db):
    scalar(db, "SELECT count(*) FROM pyqueue.enqueue_batch('q', array_fill('{}'::jsonb, ARRAY[7]))")
    assert len(claim(db, batch_size=3)) == 3
    assert len(claim(db, batch_size=3)) == 3
    assert len(claim(db, batch_size=3)) == 1
    assert claim(db, batch_size=3) == []


def test_the_jobs_of_one_claim_share_a_token_that_holds_none_of_another_claims_jobs(db):
    first_ids = [enqueue(db), enqueue(db)]
    first = claim(db, batch_size=2)
    second_id = enqueue(db)
    (second,) = claim(db, batch_size=2)
    assert [c.id for c in first] == first_ids and second.id == second_id
    assert first[0].lease_token == first[1].lease_token != second.lease_token

    # A claim's token fences its own jobs only: with another claim's job it
    # changes nothing, and that job's holder finishes it.
    assert complete(db, second_id, first[0].lease_token) is False
    assert rows(
        db,
        "SELECT * FROM pyqueue.complete_batch(%s, %s)",
        [[first_ids[0], second_id], [first[0].lease_token] * 2],
    ) == [{"complete_batch": first_ids[0]}]
    assert job(db, second_id)["status"] == "running"
    assert complete(db, second_id, second.lease_token) is True


def test_enqueue_uses_the_queue_settings_for_max_attempts(db):
    db.execute("SELECT pyqueue.configure_queue('five', max_attempts => 5)")
    assert job(db, enqueue(db, "five"))["max_attempts"] == 5
    assert job(db, enqueue(db, "five", max_attempts=2))["max_attempts"] == 2
    assert job(db, enqueue(db, "other"))["max_attempts"] == 3
    db.execute("SELECT pyqueue.configure_queue('*', max_attempts => 7)")
    assert job(db, enqueue(db, "other"))["max_attempts"] == 7
    assert job(db, enqueue(db, "five"))["max_attempts"] == 5


def test_configure_queue_returns_the_effective_settings_and_keeps_unset_ones(db):
    first = row(db, "SELECT * FROM pyqueue.configure_queue('q', max_attempts => 9)")
    assert first["max_attempts"] == 9
    assert first["backoff_base"] == timedelta(seconds=1)  # from '*'
    second = row(
        db, "SELECT * FROM pyqueue.configure_queue('q', backoff_base => interval '2 seconds')"
    )
    assert second["max_attempts"] == 9
    assert second["backoff_base"] == timedelta(seconds=2)


# ---------------------------------------------------------------- complete


def test_complete_stores_the_result_and_finishes_the_job(db):
    job_id = enqueue(db)
    c = claim_one(db)
    assert complete(db, job_id, c.lease_token, '{"rows": 12}') is True
    j = job(db, job_id)
    assert j["status"] == "completed"
    assert j["result"] == {"rows": 12}
    assert j["finished_at"] is not None
    assert j["lease_token"] is None and j["locked_until"] is None
    # Completing twice changes nothing and says so.
    assert complete(db, job_id, c.lease_token, '{"rows": 99}') is False
    assert job(db, job_id)["result"] == {"rows": 12}


def test_complete_batch_completes_the_jobs_still_held_and_reports_which(db):
    ids = [enqueue(db, payload=str(n)) for n in range(3)]
    held = {c.id: c.lease_token for c in claim(db, batch_size=3)}
    assert set(held) == set(ids)
    stale = uuid.uuid4()
    done = scalar(
        db,
        "SELECT array_agg(x ORDER BY x) FROM pyqueue.complete_batch(%s, %s, %s::jsonb[]) AS x",
        [ids, [held[ids[0]], held[ids[1]], stale], ['{"r": 0}', '{"r": 1}', '{"r": 2}']],
    )
    assert done == ids[:2]
    assert [job(db, i)["result"] for i in ids] == [{"r": 0}, {"r": 1}, None]
    assert [job(db, i)["status"] for i in ids] == ["completed", "completed", "running"]
    # Without results, and an empty batch.
    assert scalar(
        db,
        "SELECT array_agg(x) FROM pyqueue.complete_batch(%s, %s) AS x",
        [[ids[2]], [held[ids[2]]]],
    ) == [ids[2]]
    assert rows(db, "SELECT * FROM pyqueue.complete_batch('{}', '{}')") == []


# ---------------------------------------------------------------- fail


def test_fail_with_attempts_left_schedules_a_retry_with_backoff(db):
    job_id = enqueue(db, max_attempts=3)
    c = claim_one(db)
    assert fail(db, job_id, c.lease_token, "smtp refused") == "pending"
    j = job(db, job_id)
    assert j["status"] == "pending"
    assert j["error"] == "smtp refused"
    assert j["attempt"] == 1
    assert j["lease_token"] is None
    # Default backoff: base 1 s, so the first retry waits between 0.5 s and 1 s.
    wait = j["run_at"] - j["failed_at"]
    assert timedelta(seconds=0.5) <= wait <= timedelta(seconds=1)
    assert claim(db) == []  # not due yet


def test_backoff_doubles_per_attempt_with_the_jobs_own_base(db):
    job_id = enqueue(db, max_attempts=5, backoff_base="10 seconds", backoff_max="25 seconds")
    ceilings = [10, 20, 25, 25]  # base * 2^(attempt-1), capped at 25 s
    for attempt, ceiling in enumerate(ceilings, start=1):
        c = claim_one(db)
        assert c.attempt == attempt
        assert fail(db, job_id, c.lease_token, f"failure {attempt}") == "pending"
        j = job(db, job_id)
        wait = (j["run_at"] - j["failed_at"]).total_seconds()
        assert ceiling / 2 <= wait <= ceiling, (attempt, wait)
        make_due(db, job_id)


def test_fail_uses_the_queue_backoff_when_the_job_has_none(db):
    db.execute(
        "SELECT pyqueue.configure_queue('slow', backoff_base => '1 hour', backoff_max => '2 hours')"
    )
    job_id = enqueue(db, "slow")
    c = claim_one(db, "slow")
    fail(db, job_id, c.lease_token)
    j = job(db, job_id)
    assert timedelta(minutes=30) <= j["run_at"] - j["failed_at"] <= timedelta(hours=1)


def test_fail_on_the_last_attempt_moves_the_job_to_the_dead_letter_table(db):
    job_id = enqueue(db, payload='{"invoice": 7}', max_attempts=2, priority=4)
    first = claim_one(db)
    assert fail(db, job_id, first.lease_token, "first error") == "pending"
    make_due(db, job_id)
    second = claim_one(db)
    assert second.attempt == 2
    assert (
        scalar(
            db,
            "SELECT pyqueue.fail(%s, %s, %s, %s)",
            [job_id, second.lease_token, "second error", "Traceback: line 1"],
        )
        == "dead"
    )
    assert counts(db) == (0, 1)
    d = dead(db, job_id)
    assert d["payload"] == {"invoice": 7}
    assert (d["attempt"], d["max_attempts"], d["priority"]) == (2, 2, 4)
    assert d["error"] == "second error"
    assert d["traceback"] == "Traceback: line 1"
    assert d["dead_at"] is not None and d["failed_at"] is not None
    assert d["retried_as"] is None
    assert status(db, job_id) == "dead"
    assert claim(db, batch_size=10) == []
    # The dead job cannot be failed or completed again by its last holder.
    assert fail(db, job_id, second.lease_token) == "lost"
    assert complete(db, job_id, second.lease_token) is False


def test_fail_without_an_error_message_still_records_one(db):
    job_id = enqueue(db)
    c = claim_one(db)
    db.execute("SELECT pyqueue.fail(%s, %s, NULL)", [job_id, c.lease_token])
    assert job(db, job_id)["error"] == "(no error message)"


def test_fail_keeps_only_the_first_10000_characters_of_the_error(db):
    job_id = enqueue(db)
    c = claim_one(db)
    fail(db, job_id, c.lease_token, "x" * 20000)
    assert len(job(db, job_id)["error"]) == 10000


def fail_batch(db, job_ids, tokens, errors, tracebacks=None) -> list[tuple[int, str]]:
    found = db.execute(
        "SELECT job_id, outcome::text FROM pyqueue.fail_batch(%s, %s, %s, %s)",
        [job_ids, tokens, errors, tracebacks],
    ).fetchall()
    return [(job_id, outcome) for job_id, outcome in found]


def test_fail_batch_retries_buries_and_reports_lost_jobs_one_row_each_in_order(db):
    retried = enqueue(db, payload='{"n": 1}', max_attempts=3, backoff_base="10 seconds")
    doomed = enqueue(db, payload='{"n": 2}', max_attempts=1)
    stolen = enqueue(db, payload='{"n": 3}')
    held = {c.id: c.lease_token for c in claim(db, batch_size=3)}
    expire_lease(db, stolen)
    assert claim_one(db).id == stolen  # another worker holds it now
    stolen_before = job(db, stolen)

    outcomes = fail_batch(
        db,
        [doomed, 987654, retried, stolen],
        [held[doomed], held[retried], held[retried], held[stolen]],
        ["disk full", "nobody", "smtp refused", "too late"],
        ["Traceback: doomed", None, "Traceback: retried", None],
    )
    assert outcomes == [(doomed, "dead"), (987654, "lost"), (retried, "pending"), (stolen, "lost")]

    j = job(db, retried)
    assert (j["status"], j["error"], j["traceback"], j["attempt"]) == (
        "pending", "smtp refused", "Traceback: retried", 1
    )  # fmt: skip
    assert j["lease_token"] is None
    assert timedelta(seconds=5) <= j["run_at"] - j["failed_at"] <= timedelta(seconds=10)
    d = dead(db, doomed)
    assert (d["error"], d["traceback"], d["payload"]) == (
        "disk full",
        "Traceback: doomed",
        {"n": 2},
    )
    assert job(db, stolen) == stolen_before


def test_fail_batch_takes_each_jobs_backoff_and_the_queues_when_it_has_none(db):
    db.execute(
        "SELECT pyqueue.configure_queue('slow', backoff_base => '1 hour', backoff_max => '2 hours')"
    )
    own = enqueue(db, "slow", backoff_base="10 seconds", backoff_max="10 seconds")
    queues = enqueue(db, "slow")
    held = claim(db, "slow", batch_size=2)
    outcomes = fail_batch(db, [c.id for c in held], [c.lease_token for c in held], ["a", "b"])
    assert sorted(outcomes) == [(own, "pending"), (queues, "pending")]
    own_wait = job(db, own)["run_at"] - job(db, own)["failed_at"]
    queues_wait = job(db, queues)["run_at"] - job(db, queues)["failed_at"]
    assert timedelta(seconds=5) <= own_wait <= timedelta(seconds=10)
    assert timedelta(minutes=30) <= queues_wait <= timedelta(hours=1)


def test_fail_batch_without_tracebacks_or_messages_still_records_an_error(db):
    job_id = enqueue(db)
    c = claim_one(db)
    assert fail_batch(db, [job_id], [c.lease_token], [None]) == [(job_id, "pending")]
    assert (job(db, job_id)["error"], job(db, job_id)["traceback"]) == ("(no error message)", None)


@pytest.mark.parametrize(
    ("errors", "tracebacks", "message"),
    [
        (["one"], None, "errors has 1 elements, job_ids has 2"),
        (None, None, "errors has NULL elements, job_ids has 2"),
        (["one", "two"], ["only one"], "tracebacks has 1 elements, job_ids has 2"),
    ],
)
def test_fail_batch_refuses_arrays_that_do_not_pair_up_and_writes_nothing(
    db, errors, tracebacks, message
):
    enqueue(db)
    enqueue(db)
    held = claim(db, batch_size=2)
    with writes_nothing(db):
        error = sqlstate_of(
            db,
            "SELECT * FROM pyqueue.fail_batch(%s, %s, %s, %s)",
            [[c.id for c in held], [c.lease_token for c in held], errors, tracebacks],
        )
    assert error.sqlstate == "22023"
    assert message in error.diag.message_primary


# ---------------------------------------------------------------- leases


def test_heartbeat_extends_the_leases_still_held(db):
    a, b = enqueue(db, payload="1"), enqueue(db, payload="2")
    held = {c.id: c.lease_token for c in claim(db, batch_size=2, lease="1 minute")}
    extended = scalar(
        db,
        "SELECT array_agg(x ORDER BY x) FROM pyqueue.heartbeat(%s, %s, '1 hour') AS x",
        [[a, b], [held[a], uuid.uuid4()]],
    )
    assert extended == [a]
    assert job(db, a)["locked_until"] - scalar(db, "SELECT now()") > timedelta(minutes=59)
    assert job(db, b)["locked_until"] - scalar(db, "SELECT now()") < timedelta(minutes=2)


def test_recover_expired_puts_a_job_whose_lease_ran_out_back_to_pending(db):
    job_id = enqueue(db)
    claim_one(db, lease="1 millisecond")
    time.sleep(0.02)
    assert scalar(db, "SELECT pyqueue.recover_expired()") == 1
    j = job(db, job_id)
    assert j["status"] == "pending"
    assert j["attempt"] == 1  # the lost run counts
    assert j["lease_token"] is None
    assert j["error"].startswith("lease expired")
    assert j["run_at"] <= scalar(db, "SELECT now()")
    assert scalar(db, "SELECT pyqueue.recover_expired()") == 0
    assert claim_one(db).attempt == 2


def test_a_recovered_or_released_job_keeps_its_place_in_line(db):
    first = enqueue(db)
    assert claim_one(db).id == first
    later = enqueue(db)
    expire_lease(db, first)
    assert scalar(db, "SELECT pyqueue.recover_expired()") == 1
    assert claim_one(db).id == first  # ahead of the job enqueued after it

    again = claim_one(db)
    assert again.id == later
    last = enqueue(db)
    released = scalar(
        db, "SELECT array_agg(x) FROM pyqueue.release(%s, %s) AS x", [[later], [again.lease_token]]
    )
    assert released == [later]
    assert claim_one(db).id == later  # ahead of `last`, enqueued after it
    assert claim_one(db).id == last


def test_recover_expired_dead_letters_a_job_on_its_last_attempt(db):
    job_id = enqueue(db, max_attempts=1)
    claim_one(db)
    expire_lease(db, job_id)
    assert scalar(db, "SELECT pyqueue.recover_expired()") == 1
    assert status(db, job_id) == "dead"
    assert "lease expired" in dead(db, job_id)["error"]


def test_recover_expired_leaves_live_leases_alone_and_honours_max_jobs(db):
    ids = [enqueue(db, payload=str(n)) for n in range(4)]
    claim(db, batch_size=4)
    for job_id in ids[:3]:
        expire_lease(db, job_id)
    assert scalar(db, "SELECT pyqueue.recover_expired(max_jobs => 2)") == 2
    assert scalar(db, "SELECT pyqueue.recover_expired()") == 1
    assert [status(db, i) for i in ids] == ["pending", "pending", "pending", "running"]


def test_recover_expired_takes_a_lease_only_once_it_has_run_out(dsn, db):
    live, expired = enqueue(db, payload="1"), enqueue(db, payload="2")
    assert len(claim(db, batch_size=2, lease="1 hour")) == 2
    # One transaction: now() is the same instant in each of its statements, so
    # the leases end just after and just before the instant recovery compares.
    with psycopg.connect(dsn) as conn:
        set_lease = "UPDATE pyqueue.jobs SET locked_until = now() + %s::interval WHERE id = %s"
        conn.execute(set_lease, ["1 millisecond", live])
        conn.execute(set_lease, ["-1 millisecond", expired])
        assert scalar(conn, "SELECT pyqueue.recover_expired()") == 1
    assert (status(db, live), status(db, expired)) == ("running", "pending")


def test_claim_recovers_expired_leases_by_itself(db):
    job_id = enqueue(db)
    first = claim_one(db, lease="1 millisecond")
    time.sleep(0.02)
    again = claim_one(db)
    assert again.id == job_id
    assert again.attempt == 2
    assert again.lease_token != first.lease_token


def test_report_progress_clamps_to_0_100_and_keeps_the_last_values(db):
    job_id = enqueue(db)
    c = claim_one(db)

    def report(progress, message=None):
        ok = scalar(
            db,
            "SELECT pyqueue.report_progress(%s, %s, %s, %s)",
            [job_id, c.lease_token, progress, message],
        )
        j = job(db, job_id)
        return ok, j["progress"], j["progress_message"]

    assert report(42, "halfway") == (True, 42, "halfway")
    assert report(None, "a message alone") == (True, 42, "a message alone")
    assert report(None) == (True, 42, "a message alone")
    assert report(-5, "halfway") == (True, 0, "halfway")
    assert report(250, "done soon") == (True, 100, "done soon")
    assert report(None, "still going") == (True, 100, "still going")
    assert report(2147483647) == (True, 100, "still going")
    assert report(-2147483648) == (True, 0, "still going")
    ok, _, message = report(7, "m" * 5000)
    assert ok and len(message) == 1000


def test_report_progress_never_raises_for_an_unknown_job(db):
    assert scalar(db, "SELECT pyqueue.report_progress(987654, gen_random_uuid(), 5)") is False


def test_release_hands_a_job_back_without_counting_the_attempt(db):
    job_id = enqueue(db)
    c = claim_one(db)
    released = scalar(
        db, "SELECT array_agg(x) FROM pyqueue.release(%s, %s) AS x", [[job_id], [c.lease_token]]
    )
    assert released == [job_id]
    j = job(db, job_id)
    assert (j["status"], j["attempt"], j["lease_token"]) == ("pending", 0, None)
    again = claim_one(db)
    assert again.attempt == 1
    # The old token no longer holds the job: releasing with it does nothing.
    assert rows(db, "SELECT * FROM pyqueue.release(%s, %s)", [[job_id], [c.lease_token]]) == []
    assert status(db, job_id) == "running"


# ---------------------------------------------------------------- fencing


def _stale_by_recovery(db, job_id):
    """The first holder's lease runs out and another worker claims the job."""
    first = claim_one(db)
    expire_lease(db, job_id)
    second = claim_one(db)
    assert second.id == job_id and second.lease_token != first.lease_token
    return first.lease_token, second.lease_token


def _stale_by_cancel(db, job_id):
    first = claim_one(db)
    assert scalar(db, "SELECT pyqueue.cancel(%s)", [job_id]) is True
    return first.lease_token, None


@pytest.mark.parametrize(
    "lose", [_stale_by_recovery, _stale_by_cancel], ids=["recovered", "cancelled"]
)
def test_a_stale_lease_token_changes_nothing_and_says_so(db, lose):
    job_id = enqueue(db)
    stale, current = lose(db, job_id)
    before = job(db, job_id)

    assert complete(db, job_id, stale, '{"late": true}') is False
    assert fail(db, job_id, stale, "late failure") == "lost"
    assert fail_batch(db, [job_id], [stale], ["late failure"]) == [(job_id, "lost")]
    assert rows(db, "SELECT * FROM pyqueue.heartbeat(%s, %s)", [[job_id], [stale]]) == []
    assert scalar(db, "SELECT pyqueue.report_progress(%s, %s, 50)", [job_id, stale]) is False
    assert rows(db, "SELECT * FROM pyqueue.complete_batch(%s, %s)", [[job_id], [stale]]) == []
    assert rows(db, "SELECT * FROM pyqueue.release(%s, %s)", [[job_id], [stale]]) == []
    assert job(db, job_id) == before

    if current is not None:  # the new holder is unaffected
        assert complete(db, job_id, current, '{"ok": true}') is True
        assert job(db, job_id)["result"] == {"ok": True}


def test_writes_nothing_notices_an_update_that_keeps_every_count(db):
    job_id = enqueue(db)
    with pytest.raises(AssertionError), writes_nothing(db):
        db.execute("UPDATE pyqueue.jobs SET priority = 5 WHERE id = %s", [job_id])


@pytest.mark.parametrize(
    "call",
    [
        "SELECT pyqueue.complete(987654, gen_random_uuid())",
        "SELECT pyqueue.fail(987654, gen_random_uuid(), 'x')",
        "SELECT pyqueue.cancel(987654)",
        "SELECT pyqueue.retry_dead(987654)",
        "SELECT * FROM pyqueue.get_job(987654)",
    ],
)
def test_an_unknown_job_id_raises_no_data_found(db, call):
    enqueue(db)
    with writes_nothing(db):
        error = sqlstate_of(db, call)
    assert error.sqlstate == "P0002"
    assert "no job with id 987654" in error.diag.message_primary


# ---------------------------------------------------------------- cancel, retry_dead, purge


def test_cancel_a_pending_job(db):
    job_id = enqueue(db)
    assert scalar(db, "SELECT pyqueue.cancel(%s)", [job_id]) is True
    j = job(db, job_id)
    assert j["status"] == "cancelled" and j["finished_at"] is not None
    assert claim(db) == []
    assert scalar(db, "SELECT pyqueue.cancel(%s)", [job_id]) is False


def test_cancel_a_running_job_takes_it_from_its_worker(db):
    job_id = enqueue(db)
    c = claim_one(db)
    assert scalar(db, "SELECT pyqueue.cancel(%s)", [job_id]) is True
    assert status(db, job_id) == "cancelled"
    assert job(db, job_id)["lease_token"] is None
    assert complete(db, job_id, c.lease_token) is False
    assert fail(db, job_id, c.lease_token) == "lost"
    assert status(db, job_id) == "cancelled"


def test_cancel_a_finished_or_dead_job_returns_false(db):
    done = enqueue(db, payload="1")
    c = claim_one(db)
    complete(db, done, c.lease_token)
    buried = enqueue(db, payload="2", max_attempts=1)
    fail(db, buried, claim_one(db).lease_token)
    assert scalar(db, "SELECT pyqueue.cancel(%s)", [done]) is False
    assert scalar(db, "SELECT pyqueue.cancel(%s)", [buried]) is False
    assert (status(db, done), status(db, buried)) == ("completed", "dead")


def _dead_job(db, payload='{"k": 1}', **options):
    job_id = enqueue(db, payload=payload, max_attempts=1, **options)
    c = claim_one(db)
    assert c.id == job_id
    assert fail(db, job_id, c.lease_token, "gave up") == "dead"
    return job_id


def test_retry_dead_replays_a_dead_job_as_a_new_pending_job(db):
    old = _dead_job(db, priority=3, backoff_base="2 seconds")
    new = scalar(db, "SELECT pyqueue.retry_dead(%s)", [old])
    assert new != old
    j = job(db, new)
    assert (j["queue"], j["payload"], j["priority"], j["max_attempts"]) == ("q", {"k": 1}, 3, 1)
    assert j["backoff_base"] == timedelta(seconds=2)
    assert (j["status"], j["attempt"], j["error"]) == ("pending", 0, None)
    d = dead(db, old)
    assert d["retried_as"] == new and d["retried_at"] is not None
    # Replaying again returns the same new job, and adds nothing.
    with writes_nothing(db):
        assert scalar(db, "SELECT pyqueue.retry_dead(%s)", [old]) == new
    assert claim_one(db).id == new


def test_retry_dead_refuses_a_job_that_is_not_dead(db):
    job_id = enqueue(db)
    with writes_nothing(db):
        error = sqlstate_of(db, "SELECT pyqueue.retry_dead(%s)", [job_id])
    assert error.sqlstate == "55000"
    assert f"job {job_id} is not dead-lettered (status pending)" in error.diag.message_primary


def test_retry_dead_does_not_carry_the_idempotency_key_over(db):
    old = _dead_job(db, idempotency_key="invoice-7")
    # The key was released when the job died: a new enqueue takes it.
    fresh = enqueue(db, idempotency_key="invoice-7")
    assert fresh != old
    new = scalar(db, "SELECT pyqueue.retry_dead(%s)", [old])
    assert job(db, new)["idempotency_key"] is None
    assert enqueue(db, idempotency_key="invoice-7") == fresh


def _finished(db, queue="q", state="completed", ago="8 days"):
    job_id = enqueue(db, queue)
    if state == "completed":
        c = claim_one(db, queue)
        complete(db, job_id, c.lease_token)
    else:
        db.execute("SELECT pyqueue.cancel(%s)", [job_id])
    db.execute(
        "UPDATE pyqueue.jobs SET finished_at = now() - %s::interval WHERE id = %s", [ago, job_id]
    )
    return job_id


def _ids(db):
    return {r["id"] for r in rows(db, "SELECT id FROM pyqueue.all_jobs")}


def test_purge_deletes_finished_jobs_past_the_retention(db):
    old_done = _finished(db, ago="8 days")
    old_cancelled = _finished(db, state="cancelled", ago="8 days")
    recent = _finished(db, ago="6 days")
    pending = enqueue(db)
    db.execute(
        "UPDATE pyqueue.jobs SET created_at = now() - interval '30 days' WHERE id = %s", [pending]
    )
    running = enqueue(db, payload="2")
    claim(db, batch_size=5)
    assert scalar(db, "SELECT pyqueue.purge()") == 2
    assert _ids(db) == {recent, pending, running}
    assert old_done not in _ids(db) and old_cancelled not in _ids(db)


def test_purge_honours_each_queues_retention(db):
    db.execute("SELECT pyqueue.configure_queue('short', retention => '1 minute')")
    short = _finished(db, "short", ago="2 minutes")
    normal = _finished(db, "normal", ago="2 minutes")
    assert scalar(db, "SELECT pyqueue.purge()") == 1
    assert _ids(db) == {normal}
    assert short not in _ids(db)


def test_purge_older_than_and_queue_filter(db):
    a_old = _finished(db, "a", ago="2 hours")
    a_new = _finished(db, "a", ago="10 minutes")
    b_old = _finished(db, "b", ago="2 hours")
    assert scalar(db, "SELECT pyqueue.purge(older_than => '1 hour', queue => 'a')") == 1
    assert _ids(db) == {a_new, b_old}
    assert scalar(db, "SELECT pyqueue.purge(older_than => '1 hour')") == 1
    assert _ids(db) == {a_new}
    assert scalar(db, "SELECT pyqueue.purge(older_than => '0')") == 1
    assert _ids(db) == set()
    assert a_old not in _ids(db)


def test_purge_deletes_replayed_dead_letters_only(db):
    replayed = _dead_job(db, payload="1")
    kept = _dead_job(db, payload="2")
    new = scalar(db, "SELECT pyqueue.retry_dead(%s)", [replayed])
    db.execute(
        "UPDATE pyqueue.dead_jobs SET dead_at = now() - interval '30 days',"
        " retried_at = CASE WHEN retried_as IS NULL THEN NULL ELSE now() - interval '8 days' END"
    )
    assert scalar(db, "SELECT pyqueue.purge()") == 1
    assert _ids(db) == {kept, new}


def _a_job_in_each_state(db) -> dict[str, int]:
    jobs = {name: enqueue(db, name, max_attempts=1) for name in
            ("pending", "running", "completed", "cancelled", "dead", "replayed")}  # fmt: skip
    for name in ("running", "completed", "dead", "replayed"):
        claimed = claim_one(db, name)
        if name == "completed":
            complete(db, claimed.id, claimed.lease_token)
        elif name in ("dead", "replayed"):
            assert fail(db, claimed.id, claimed.lease_token) == "dead"
    scalar(db, "SELECT pyqueue.cancel(%s)", [jobs["cancelled"]])
    scalar(db, "SELECT pyqueue.retry_dead(%s)", [jobs["replayed"]])
    return jobs


def test_job_actions_offer_exactly_what_cancel_and_retry_dead_do(db):
    for name, job_id in _a_job_in_each_state(db).items():
        found = row(
            db,
            "SELECT a.status, a.finished, pyqueue.job_actions(a.status, a.retried_as) AS actions,"
            " s.finished AS finished_by_word"
            " FROM pyqueue.all_jobs a JOIN pyqueue.job_statuses s USING (status) WHERE a.id = %s",
            [job_id],
        )
        assert found["finished"] == found["finished_by_word"], name
        with db.transaction(force_rollback=True):
            cancelled = scalar(db, "SELECT pyqueue.cancel(%s)", [job_id])
        assert cancelled == ("cancel" in found["actions"]), name
        with db.transaction(force_rollback=True):
            before = counts(db)
            if found["status"] == "dead":
                scalar(db, "SELECT pyqueue.retry_dead(%s)", [job_id])
            replayed = counts(db)[0] == before[0] + 1
        assert replayed == ("retry" in found["actions"]), name
        assert found["actions"] == {"pending": ["cancel"], "running": ["cancel"],
                                    "dead": ["retry"]}.get(name, []), name  # fmt: skip


def test_job_statuses_name_every_status_once_in_lifecycle_order(db):
    words = rows(db, "SELECT * FROM pyqueue.job_statuses ORDER BY position")
    assert [(w["status"], w["finished"]) for w in words] == [
        ("pending", False),
        ("running", False),
        ("completed", True),
        ("cancelled", True),
        ("dead", True),
    ]
    assert all(w["meaning"] for w in words)
    error = sqlstate_of(db, "SELECT * FROM pyqueue.list_jobs('finished')")
    assert error.diag.message_hint == (
        "A status is one of pending, running, completed, cancelled, dead."
    )


# ---------------------------------------------------------------- idempotency


def test_enqueue_with_a_known_idempotency_key_returns_the_same_job(db):
    first = enqueue(db, payload='{"v": 1}', idempotency_key="order-1")
    with writes_nothing(db):
        again = enqueue(db, payload='{"v": 2}', idempotency_key="order-1")
    assert again == first
    assert job(db, first)["payload"] == {"v": 1}
    assert enqueue(db, "other", idempotency_key="order-1") != first
    assert enqueue(db, idempotency_key="order-2") != first


def test_a_key_held_on_two_queues_gives_each_queue_its_own_job(db):
    on_a = enqueue(db, "a", idempotency_key="k")
    on_b = enqueue(db, "b", idempotency_key="k")
    assert on_a != on_b
    # Both queues, in both orders: a lookup that ignored the queue would find
    # the same job for the two.
    with writes_nothing(db):
        assert enqueue(db, "b", idempotency_key="k") == on_b
        assert enqueue(db, "a", idempotency_key="k") == on_a
        assert _enqueue_batch_with(db, "b", ["1"], ["k"]) == [on_b]
        assert _enqueue_batch_with(db, "a", ["1"], ["k"]) == [on_a]


def test_an_idempotency_key_is_held_until_the_job_is_purged(db):
    job_id = enqueue(db, idempotency_key="k")
    c = claim_one(db)
    complete(db, job_id, c.lease_token)
    assert enqueue(db, idempotency_key="k") == job_id  # completed still holds it
    db.execute("SELECT pyqueue.purge(older_than => '0')")
    assert enqueue(db, idempotency_key="k") != job_id


def _enqueue_batch(db, payloads, keys):
    query = "SELECT pyqueue.enqueue_batch('q', %s::jsonb[], idempotency_keys => %s)"
    return [r[0] for r in db.execute(query, [payloads, keys]).fetchall()]


def test_enqueue_batch_returns_ids_in_order_and_resolves_repeated_keys(db):
    ids = _enqueue_batch(
        db, ['{"n": 0}', '{"n": 1}', '{"n": 2}', '{"n": 3}'], ["k1", "k2", "k1", None]
    )
    assert len(ids) == 4
    assert ids[0] == ids[2]
    assert len(set(ids)) == 3
    assert counts(db) == (3, 0)
    assert [job(db, i)["payload"] for i in ids] == [{"n": 0}, {"n": 1}, {"n": 0}, {"n": 3}]
    # A later batch finds the keys already held.
    again = _enqueue_batch(db, ["1", "2"], ["k2", "k3"])
    assert again[0] == ids[1]
    assert again[1] not in ids
    assert counts(db) == (4, 0)
    assert enqueue(db, idempotency_key="k3") == again[1]


def test_enqueue_batch_without_keys_keeps_the_payload_order(db):
    payloads = [f'{{"n": {n}}}' for n in range(50)]
    ids = [
        r["enqueue_batch"]
        for r in rows(
            db, "SELECT * FROM pyqueue.enqueue_batch('q', %s::jsonb[], priority => 2)", [payloads]
        )
    ]
    assert [job(db, i)["payload"]["n"] for i in ids] == list(range(50))
    assert {job(db, i)["priority"] for i in ids} == {2}
    assert rows(db, "SELECT * FROM pyqueue.enqueue_batch('q', '{}'::jsonb[])") == []


# ---------------------------------------------------------------- reading


def test_list_jobs_filters_by_status_and_queue_newest_first(db):
    a_old, a_new, b = enqueue(db, "a", "1"), enqueue(db, "a", "2"), enqueue(db, "b", "3")
    assert claim_one(db, "a").id == a_old
    buried = _dead_job(db)

    def listed(**filters):
        named = ", ".join(f"{name} => %({name})s" for name in filters)
        return [r["id"] for r in rows(db, f"SELECT id FROM pyqueue.list_jobs({named})", filters)]

    assert listed() == [buried, b, a_new, a_old]
    assert listed(status="pending") == [b, a_new]
    assert listed(status="running") == [a_old]
    assert listed(status="dead") == [buried]
    assert listed(queue="a") == [a_new, a_old]
    assert listed(status="pending", queue="a") == [a_new]
    assert listed(status="completed") == []
    assert listed(max_rows=2) == [buried, b]


# ---------------------------------------------------------------- NOTIFY


def test_enqueue_notifies_the_queue_name_at_commit(dsn, db):
    db.execute("LISTEN pyqueue_jobs")
    with psycopg.connect(dsn) as producer:  # a transaction, not autocommit
        enqueue(producer, "invoices")
        assert list(db.notifies(timeout=0.2)) == []
        producer.commit()
    notes = list(db.notifies(timeout=5, stop_after=1))
    assert [(n.channel, n.payload) for n in notes] == [("pyqueue_jobs", "invoices")]


def test_finishing_a_job_notifies_its_id(dsn, db):
    job_id = enqueue(db)
    c = claim_one(db)
    db.execute("LISTEN pyqueue_finished")
    with psycopg.connect(dsn, autocommit=True) as worker:
        complete(worker, job_id, c.lease_token)
    notes = list(db.notifies(timeout=5, stop_after=1))
    assert [(n.channel, n.payload) for n in notes] == [("pyqueue_finished", str(job_id))]


# ---------------------------------------------------------------- bad input


def test_a_payload_over_the_queue_limit_is_refused_whole(db):
    db.execute("SELECT pyqueue.configure_queue('small', max_payload_bytes => 100)")
    assert enqueue(db, "small", '"short"')
    big = '"' + "x" * 200 + '"'
    with writes_nothing(db):
        # With a key or without: the two take different inserts.
        for key in [None, "k"]:
            error = sqlstate_of(
                db, "SELECT pyqueue.enqueue('small', %s::jsonb, idempotency_key => %s)", [big, key]
            )
            assert error.sqlstate == "54000"
            assert "payload is" in error.diag.message_primary
            assert "over the queue's limit of 100 bytes" in error.diag.message_primary
        error = sqlstate_of(
            db, "SELECT pyqueue.enqueue_batch('small', ARRAY['1', %s]::jsonb[])", [big]
        )
        assert error.sqlstate == "54000"
        assert "payloads[2] is" in error.diag.message_primary
    # Other queues keep the default limit (1 MiB).
    assert enqueue(db, "large", big)


def test_enqueue_without_the_defaults_row_raises_instead_of_looping(db):
    # Only the schema's owner can delete it; enqueue must then fail, not spin.
    db.execute("DELETE FROM pyqueue.queues WHERE name = '*'")
    for key in [None, "k"]:
        with writes_nothing(db):
            error = sqlstate_of(
                db, "SELECT pyqueue.enqueue('q', '{}', idempotency_key => %s)", [key]
            )
        assert error.sqlstate == "42704"
        assert "defaults row '*' is missing" in error.diag.message_primary


# ---------------------------------------------------------------- views


def test_queue_stats_counts_jobs_by_status(db):
    enqueue(db, "a", "1")
    enqueue(db, "a", "2", delay="1 hour")
    running = enqueue(db, "a", "3", priority=5)
    claim_one(db, "a")
    buried = enqueue(db, "b", "4", max_attempts=1)
    fail(db, buried, claim_one(db, "b").lease_token)
    stats = {s["queue"]: s for s in rows(db, "SELECT * FROM pyqueue.queue_stats")}
    assert set(stats) == {"a", "b"}
    a = stats["a"]
    assert (a["pending"], a["due"], a["running"], a["completed"], a["dead"]) == (2, 1, 1, 0, 0)
    assert stats["b"]["dead"] == 1
    assert status(db, running) == "running"
    assert [r["id"] for r in rows(db, "SELECT id FROM pyqueue.running_jobs")] == [running]
    assert [r["id"] for r in rows(db, "SELECT id FROM pyqueue.dead_letters")] == [buried]


# ---------------------------------------------------------------- psql

PSQL_SESSION = r"""
\set ON_ERROR_STOP 1
\pset pager off
-- A producer enqueues three jobs; the first should run first.
SELECT pyqueue.enqueue('emails', '{"to": "ok@example.com"}', priority => 10) AS ok_id \gset
SELECT pyqueue.enqueue('emails', '{"to": "bad@example.com"}', max_attempts => 1) AS bad_id \gset
SELECT pyqueue.enqueue('emails', '{"to": "later@example.com"}', delay => '1 hour') AS later_id \gset
-- A worker claims and completes the first.
SELECT id AS first_id, lease_token AS first_token
FROM pyqueue.claim_batch(ARRAY['emails'], 'psql-worker', 1, '1 minute') \gset
SELECT pyqueue.complete(:first_id, :'first_token', '{"sent": true}') AS completed \gset
-- It claims the second, which fails on its only attempt: dead-lettered.
SELECT id AS second_id, lease_token AS second_token
FROM pyqueue.claim_batch(ARRAY['emails'], 'psql-worker', 1, '1 minute') \gset
SELECT pyqueue.fail(:second_id, :'second_token', 'mailbox full') AS outcome \gset
-- An operator replays the dead letter (twice: one new job) and cancels the delayed job.
SELECT pyqueue.retry_dead(:bad_id) AS replay_id \gset
SELECT pyqueue.retry_dead(:bad_id) AS replay_again \gset
SELECT pyqueue.cancel(:later_id) AS cancelled \gset
\echo RESULT ok=:ok_id bad=:bad_id later=:later_id first=:first_id second=:second_id
\echo RESULT completed=:completed outcome=:outcome cancelled=:cancelled
\echo RESULT replay=:replay_id again=:replay_again
SELECT * FROM pyqueue.queue_stats;
"""


def test_a_psql_session_alone_can_enqueue_claim_complete_fail_replay_and_cancel(dsn, db):
    done = subprocess.run(
        ["psql", "-X", "-q", "-d", psql_conninfo(dsn)],
        input=PSQL_SESSION,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    echoed = dict(
        pair.split("=", 1)
        for line in done.stdout.splitlines()
        if line.startswith("RESULT ")
        for pair in line.split()[1:]
    )
    ok, bad, later = int(echoed["ok"]), int(echoed["bad"]), int(echoed["later"])
    replay = int(echoed["replay"])
    assert (int(echoed["first"]), int(echoed["second"])) == (ok, bad)
    assert (echoed["completed"], echoed["outcome"], echoed["cancelled"]) == ("t", "dead", "t")
    assert echoed["again"] == echoed["replay"]

    assert (job(db, ok)["status"], job(db, ok)["result"]) == ("completed", {"sent": True})
    d = dead(db, bad)
    assert (d["error"], d["retried_as"]) == ("mailbox full", replay)
    assert job(db, replay)["payload"] == {"to": "bad@example.com"}
    assert status(db, replay) == "pending"
    assert status(db, later) == "cancelled"
    assert counts(db) == (3, 1)
