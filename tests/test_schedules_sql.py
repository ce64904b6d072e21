"""Cron schedules through SQL: schedule(), unschedule(), the schedules view, firing by maintain().

The clock is simulated by moving a schedule's next tick into the past.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.helpers import row, rows, scalar, sqlstate_of


def schedule(db, name="every-minute", cron="* * * * *", queue="reports", **options) -> datetime:
    named = "".join(f", {option} => %({option})s" for option in options)
    query = f"SELECT pyqueue.schedule(%(name)s, %(cron)s, %(queue)s{named})"
    return scalar(db, query, {"name": name, "cron": cron, "queue": queue, **options})


def due(db, name: str, ago: str) -> datetime:
    """Simulate the clock: the schedule's next tick came `ago`; returns that tick."""
    return scalar(
        db,
        "UPDATE pyqueue.cron_schedules SET next_run_at = date_trunc('minute', now() - %s::interval)"
        " WHERE name = %s RETURNING next_run_at",
        [ago, name],
    )


def fire(db) -> int:
    return scalar(db, "SELECT pyqueue.maintain()")["fired"]


def test_a_schedule_shows_its_next_tick_and_keeps_it_when_set_again_unchanged(db):
    first = schedule(db, payload='{"report": "daily"}', priority=3)
    now = scalar(db, "SELECT now()")
    assert now < first <= now + timedelta(minutes=1) and first.second == 0
    shown = row(db, "SELECT * FROM pyqueue.schedules")
    assert shown["name"] == "every-minute" and shown["cron"] == "* * * * *"
    assert (shown["tz"], shown["queue"], shown["payload"]) == (
        "UTC",
        "reports",
        {"report": "daily"},
    )
    assert (shown["priority"], shown["max_attempts"]) == (3, None)
    assert shown["next_run_at"] == first
    assert (shown["last_run_at"], shown["last_job_id"]) == (None, None)

    # An application that calls schedule() on every start keeps the tick it had.
    tick = due(db, "every-minute", "5 minutes")
    assert schedule(db, payload='{"report": "daily"}') == tick
    # A new expression or zone is a new timetable.
    hourly = schedule(db, cron="@hourly")
    assert hourly > now and hourly.minute == 0


def test_maintain_fires_a_due_tick_once_as_a_job_due_at_the_tick(db):
    schedule(db, payload='{"n": 1}', priority=2, max_attempts=5)
    tick = due(db, "every-minute", "30 seconds")
    assert fire(db) == 1
    job = row(db, "SELECT * FROM pyqueue.jobs")
    assert (job["queue"], job["payload"], job["priority"]) == ("reports", {"n": 1}, 2)
    assert (job["max_attempts"], job["run_at"]) == (5, tick)
    shown = row(db, "SELECT * FROM pyqueue.schedules")
    assert (shown["last_run_at"], shown["last_job_id"]) == (tick, job["id"])
    assert shown["next_run_at"] > scalar(db, "SELECT now()")
    assert fire(db) == 0  # nothing due until the next tick


def test_after_downtime_a_schedule_fires_once_not_once_per_missed_tick(db):
    schedule(db)
    tick = due(db, "every-minute", "1 hour")
    assert fire(db) == 1
    assert scalar(db, "SELECT count(*) FROM pyqueue.jobs") == 1
    assert scalar(db, "SELECT run_at FROM pyqueue.jobs") == tick
    now = scalar(db, "SELECT now()")
    assert (
        now < scalar(db, "SELECT next_run_at FROM pyqueue.schedules") <= now + timedelta(minutes=1)
    )


def test_a_tick_fires_once_even_when_asked_to_fire_it_again(db):
    # The tick's row in schedule_runs is the constraint: a schedule moved back to
    # a tick it already fired (a restore, a clock set back, a bug) fires nothing.
    schedule(db)
    tick = due(db, "every-minute", "2 minutes")
    assert fire(db) == 1
    db.execute("UPDATE pyqueue.cron_schedules SET next_run_at = %s", [tick])
    assert fire(db) == 0
    assert scalar(db, "SELECT count(*) FROM pyqueue.jobs") == 1
    assert scalar(db, "SELECT count(*) FROM pyqueue.schedule_runs WHERE tick = %s", [tick]) == 1


def test_a_schedule_reads_its_cron_in_its_zone(db):
    at = schedule(db, name="berlin-9", cron="0 9 * * *", tz="Europe/Berlin")
    local = scalar(db, "SELECT %s AT TIME ZONE 'Europe/Berlin'", [at])
    assert (local.hour, local.minute) == (9, 0)
    assert at.astimezone(UTC).hour in (7, 8)  # 09:00 in Berlin is 07:00 or 08:00 UTC


def test_unschedule_removes_a_schedule_and_its_ticks_but_not_its_jobs(db):
    schedule(db)
    due(db, "every-minute", "1 minute")
    fire(db)
    assert scalar(db, "SELECT pyqueue.unschedule('every-minute')") is True
    assert scalar(db, "SELECT pyqueue.unschedule('every-minute')") is False
    assert rows(db, "SELECT * FROM pyqueue.schedules") == []
    assert scalar(db, "SELECT count(*) FROM pyqueue.schedule_runs") == 0
    assert scalar(db, "SELECT count(*) FROM pyqueue.jobs") == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "bad name"}, "invalid schedule name 'bad name'"),
        ({"name": None}, "invalid schedule name NULL"),
        ({"queue": "no queue"}, "invalid queue name 'no queue'"),
        ({"cron": "61 * * * *"}, "invalid cron expression '61 * * * *'"),
        ({"cron": "* * *"}, "invalid cron expression '* * *'"),
        ({"tz": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
        ({"payload": None}, "payload must not be NULL"),
        ({"priority": 40000}, "priority must be between -32768 and 32767"),
        ({"max_attempts": 0}, "max_attempts must be between 1 and 1000"),
    ],
)
def test_bad_input_is_refused_by_name_and_nothing_is_scheduled(db, options, message):
    arguments = {"name": "s", "cron": "* * * * *", "queue": "reports", **options}
    named = "".join(f", {k} => %({k})s" for k in arguments if k not in ("name", "cron", "queue"))
    error = sqlstate_of(
        db, f"SELECT pyqueue.schedule(%(name)s, %(cron)s, %(queue)s{named})", arguments
    )
    assert error.sqlstate == "22023"
    assert message in error.diag.message_primary
    assert rows(db, "SELECT * FROM pyqueue.schedules") == []


def test_maintenance_forgets_old_ticks_but_each_schedules_last(db):
    schedule(db)
    for ago in ("3 minutes", "2 minutes", "1 minute"):
        due(db, "every-minute", ago)
        assert fire(db) == 1
    ticks = [r["tick"] for r in rows(db, "SELECT tick FROM pyqueue.schedule_runs ORDER BY tick")]
    assert len(ticks) == 3
    # Fired longer ago than the default retention (7 days), all three of them.
    db.execute("UPDATE pyqueue.schedule_runs SET fired_at = now() - interval '8 days'")
    scalar(db, "SELECT pyqueue.maintain()")
    kept = [r["tick"] for r in rows(db, "SELECT tick FROM pyqueue.schedule_runs")]
    assert kept == [ticks[-1]]
    shown = row(db, "SELECT last_run_at FROM pyqueue.schedules")
    assert shown["last_run_at"] == ticks[-1]
