"""Chaos: real worker processes against one server while things go wrong.

Run alone with `pytest -m chaos`. PYQUEUE_CHAOS_JOBS sets the size of each
scenario: 200 by default (CI's short form); `PYQUEUE_CHAOS_JOBS=2000` is the
longer local run. Every scenario ends with the same checks (chaos_harness.Tally):
no job lost, none completed twice, every completion backed by a finished run,
and runs beyond the first only where a crash forced them. Each prints its
summary line at the end of the pytest output.
"""

from __future__ import annotations

import random
import re
import signal
import socket
import time
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

import pyqueue
from pyqueue.localserver import temporary_server
from tests.chaos.chaos_harness import (
    WORKER_APP,
    Tally,
    durations,
    enqueue,
    harness_connect,
    in_flight,
    jobs_per_scenario,
    prepare,
    unfinished,
    wait_drained,
)

pytestmark = pytest.mark.chaos

N = jobs_per_scenario()
# Generous: the machine may be shared, and a lease must expire for recovery.
DRAIN_SECONDS = 90 + N * 0.2


def test_kill_9_workers_while_jobs_run(chaos_db, dsn, fleets, chaos_summary):
    fleet = fleets(dsn, lease=2.0)
    # A run killed counts as an attempt, and a job may be hit by several kills:
    # enough attempts that none dies of it (that would be by design, not a loss).
    normal = enqueue(chaos_db, durations(N, 0.1, 0.3, seed=1), max_attempts=25)
    failing = enqueue(chaos_db, [], failing=max(2, N // 20), max_attempts=2)
    started = time.monotonic()
    fleet.start(3)
    rng = random.Random(2)
    # Kill a worker that is running jobs, start another in its place, repeat
    # while jobs remain (for at most half the drain time).
    while unfinished(chaos_db) > 0 and time.monotonic() - started < DRAIN_SECONDS / 2:
        time.sleep(rng.uniform(0.5, 1.0))
        busy = in_flight(chaos_db)
        victims = [w for w in fleet.running if busy.get(w.pid)]
        if victims:
            fleet.kill9(rng.choice(victims))
            fleet.start(1)
    wait_drained(chaos_db, DRAIN_SECONDS, fleet)
    fleet.assert_all_alive()
    fleet.stop()
    tally = Tally.of(chaos_db, normal, failing)
    chaos_summary(
        tally.line(
            "kill -9 of busy workers", f"{fleet.kills} kills, {time.monotonic() - started:.1f} s"
        )
    )
    tally.check(reruns_allowed=True)
    assert fleet.kills >= 2, "the jobs finished before the scenario could kill twice"


def test_pg_terminate_backend_storm(chaos_db, dsn, fleets, chaos_summary):
    fleet = fleets(dsn, lease=10.0)
    normal = enqueue(chaos_db, durations(N, 0.02, 0.1, seed=3))
    failing = enqueue(chaos_db, [], failing=max(2, N // 20), max_attempts=2)
    started = time.monotonic()
    fleet.start(3)
    # No waiting for the workers to start: the storm hits them starting up too.
    rng = random.Random(4)
    terminated = rounds = 0
    while unfinished(chaos_db) > 0 and time.monotonic() - started < DRAIN_SECONDS / 2:
        time.sleep(rng.uniform(0.1, 0.3))
        # A random half of the workers' sessions: claims, heartbeats, LISTEN, ledger.
        row = chaos_db.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = %s AND random() < 0.5",
            [WORKER_APP],
        ).fetchone()
        terminated += row[0] if row else 0
        rounds += 1
    wait_drained(chaos_db, DRAIN_SECONDS, fleet)
    fleet.assert_all_alive()
    fleet.stop()
    tally = Tally.of(chaos_db, normal, failing)
    chaos_summary(
        tally.line(
            "pg_terminate_backend storm",
            f"{terminated} sessions terminated in {rounds} rounds, "
            f"{time.monotonic() - started:.1f} s",
        )
    )
    # No worker died and every lease (10 s) was renewable: nothing forces a re-run.
    tally.check(reruns_allowed=False)
    assert terminated >= 10, "the storm terminated almost nothing"


def test_a_worker_started_while_the_database_is_unreachable_waits_for_it(chaos_db, dsn, fleets):
    name = chaos_db.info.dbname
    with harness_connect(make_conninfo(dsn, dbname="postgres")) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
        )
        try:
            fleet = fleets(dsn, lease=10.0)
            [worker] = fleet.start(1)
            time.sleep(3)
        finally:
            admin.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                    sql.Identifier(name)
                )
            )
    normal = enqueue(chaos_db, [0.01] * 10)
    assert worker.alive, f"the worker gave up while the database was away\n{worker.tail()}"
    wait_drained(chaos_db, 60, fleet)
    fleet.stop()
    Tally.of(chaos_db, normal, []).check(reruns_allowed=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_server_stopped_and_started_mid_run(fleets, chaos_summary):
    # A private server, so that stopping it disturbs no other test. Its port is
    # fixed so the workers find it again after the restart.
    port = free_port()
    settings = {"fsync": "off", "synchronous_commit": "off", "port": str(port)}
    with temporary_server(settings) as server:
        url = server.url()
        pyqueue.migrate(url)
        conn = harness_connect(url)
        prepare(conn)
        fleet = fleets(url, lease=5.0)
        normal = enqueue(conn, durations(N, 0.05, 0.2, seed=5))
        started = time.monotonic()
        fleet.start(3)
        deadline = time.monotonic() + DRAIN_SECONDS
        while (done := N - unfinished(conn)) < N // 4:
            assert time.monotonic() < deadline, (
                f"only {done} of {N} jobs done before the stop\n{fleet.log_tails()}"
            )
            time.sleep(0.1)
        conn.close()
        server.stop()
        down_at = time.monotonic()
        time.sleep(2.0)
        server.start()
        assert server.port() == port
        downtime = time.monotonic() - down_at
        with harness_connect(url) as conn:
            wait_drained(conn, DRAIN_SECONDS, fleet)
            fleet.assert_all_alive()
            fleet.stop()
            tally = Tally.of(conn, normal, [])
        fleet.close()
    chaos_summary(
        tally.line(
            "server stopped and started",
            f"stopped after {done} jobs, down {downtime:.1f} s, {time.monotonic() - started:.1f} s",
        )
    )
    tally.check(reruns_allowed=True)


def vacuum_held_back(conn: psycopg.Connection[Any]) -> int:
    """Dead row versions of pyqueue.jobs that VACUUM found but could not remove."""
    notices: list[str] = []

    def collect(diagnostic: psycopg.errors.Diagnostic) -> None:
        notices.append(diagnostic.message_primary or "")

    conn.add_notice_handler(collect)
    try:
        conn.execute("VACUUM (VERBOSE) pyqueue.jobs")
    finally:
        conn.remove_notice_handler(collect)
    found = [re.search(r"(\d+) are dead but not yet removable", n) for n in notices]
    counts = [int(m.group(1)) for m in found if m]
    assert counts, f"no tuple counts in VACUUM VERBOSE output: {notices}"
    return counts[0]


def test_idle_in_transaction_session_holds_back_vacuum(chaos_db, dsn, fleets, chaos_summary):
    # A forgotten session: a snapshot taken and never released.
    holder = psycopg.connect(dsn, application_name="chaos-idle-holder")
    holder.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    holder.execute("SELECT count(*) FROM pyqueue.jobs").fetchone()
    try:
        fleet = fleets(dsn, lease=10.0)
        normal = enqueue(chaos_db, durations(N, 0.01, 0.05, seed=6))
        started = time.monotonic()
        fleet.start(2)
        wait_drained(chaos_db, DRAIN_SECONDS, fleet)
        state = chaos_db.execute(
            "SELECT state FROM pg_stat_activity WHERE application_name = 'chaos-idle-holder'"
        ).fetchone()
        assert state == ("idle in transaction",)
        held = vacuum_held_back(chaos_db)
    finally:
        holder.rollback()
        holder.close()
    after = vacuum_held_back(chaos_db)
    fleet.assert_all_alive()
    fleet.stop()
    tally = Tally.of(chaos_db, normal, [])
    chaos_summary(
        tally.line(
            "idle-in-transaction session",
            f"vacuum could not remove {held} dead row versions while it was open, "
            f"{after} after; {time.monotonic() - started:.1f} s",
        )
    )
    tally.check(reruns_allowed=False)
    assert held > 0, "the open session did not hold vacuum back: the scenario did not happen"
    assert after == 0


def test_handler_outliving_its_lease_while_heartbeating(chaos_db, dsn, fleets, chaos_summary):
    lease, long_run = 2.0, 6.0
    fleet = fleets(dsn, lease=lease, heartbeat=0.4)
    long_jobs = enqueue(chaos_db, [long_run] * 4)
    # Short jobs keep the other workers claiming (and so recovering) meanwhile.
    short_jobs = enqueue(chaos_db, durations(max(20, N // 4), 0.05, 0.3, seed=7))
    started = time.monotonic()
    fleet.start(3)
    wait_drained(chaos_db, DRAIN_SECONDS, fleet)
    fleet.assert_all_alive()
    fleet.stop()
    runs = dict(
        chaos_db.execute(
            "SELECT job_id, count(*) FROM chaos_ledger WHERE event = 'start' AND job_id = ANY(%s)"
            " GROUP BY job_id",
            [long_jobs],
        ).fetchall()
    )
    tally = Tally.of(chaos_db, long_jobs + short_jobs, [])
    chaos_summary(
        tally.line(
            "handlers outliving their lease, heartbeating",
            f"{len(long_jobs)} jobs of {long_run:g} s under a {lease:g} s lease, "
            f"{time.monotonic() - started:.1f} s",
        )
    )
    assert runs == {job_id: 1 for job_id in long_jobs}, "a heartbeating job was claimed twice"
    tally.check(reruns_allowed=False)


def frozen_runs(conn: psycopg.Connection[Any], held: list[int], pid: int) -> int:
    """How many of the jobs `held` are still running in the worker process `pid`."""
    row = conn.execute(
        "SELECT count(*) FROM pyqueue.jobs WHERE id = ANY(%s)"
        " AND status = 'running' AND worker LIKE %s",
        [held, f"%:{pid}:%"],
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_hung_worker_without_heartbeat_is_recovered(chaos_db, dsn, fleets, chaos_summary):
    # SIGSTOP freezes the whole process: handlers, heartbeats and all, as a
    # worker stuck in a blocking call or swapped out would be.
    lease = 2.0
    fleet = fleets(dsn, lease=lease)
    normal = enqueue(chaos_db, [1.0] * max(24, N // 4))
    started = time.monotonic()
    workers = fleet.start(3)
    deadline = time.monotonic() + DRAIN_SECONDS
    # Freeze a worker in the middle of several runs (3 of its 4 slots, or
    # whatever it has after 15 s on a slow machine).
    enough_by = time.monotonic() + 15
    while True:
        busy = {w.pid: busy_jobs for w in workers if (busy_jobs := in_flight(chaos_db).get(w.pid))}
        if busy and (max(map(len, busy.values())) >= 3 or time.monotonic() > enough_by):
            break
        assert time.monotonic() < deadline, "no worker started a job\n" + fleet.log_tails()
        time.sleep(0.05)
    hung = max((w for w in workers if w.pid in busy), key=lambda w: len(busy[w.pid]))
    hung.process.send_signal(signal.SIGSTOP)
    held = busy[hung.pid]
    stopped_at = time.monotonic()
    try:
        # Its leases run out and the jobs are taken from it (recovered to
        # pending, maybe claimed again already), with no help from it.
        while (still_held := frozen_runs(chaos_db, held, hung.pid)) > 0:
            assert time.monotonic() < deadline, (
                f"the frozen worker still holds {still_held} of its {len(held)} jobs"
            )
            time.sleep(0.1)
        recovered_after = time.monotonic() - stopped_at
    finally:
        hung.process.send_signal(signal.SIGCONT)
    wait_drained(chaos_db, DRAIN_SECONDS, fleet)
    fleet.assert_all_alive()
    fleet.stop()
    # The frozen runs, the later runs of the same jobs, and the completions.
    frozen = dict(
        chaos_db.execute(
            "SELECT job_id, min(attempt) FROM chaos_ledger WHERE pid = %s AND job_id = ANY(%s)"
            " GROUP BY job_id",
            [hung.pid, held],
        ).fetchall()
    )
    later = dict(
        chaos_db.execute(
            "SELECT job_id, max(attempt) FROM chaos_ledger WHERE event = 'start'"
            " AND job_id = ANY(%s) GROUP BY job_id",
            [held],
        ).fetchall()
    )
    completed_by = dict(
        chaos_db.execute(
            "SELECT job_id, attempt FROM chaos_completions WHERE job_id = ANY(%s)", [held]
        ).fetchall()
    )
    rerun_elsewhere = sum(1 for j in held if later[j] > frozen[j])
    tally = Tally.of(chaos_db, normal, [])
    chaos_summary(
        tally.line(
            "worker frozen by SIGSTOP",
            f"it held {len(held)} jobs, taken from it {recovered_after:.1f} s after it froze "
            f"under a {lease:g} s lease, {rerun_elsewhere} run again; "
            f"{time.monotonic() - started:.1f} s",
        )
    )
    assert rerun_elsewhere == len(held), "the frozen worker's jobs did not run again"
    # Woken up, the frozen worker finished its stale runs: fencing refused them,
    # and each job was completed by a later run.
    stale = {
        j: (frozen[j], completed_by.get(j)) for j in held if completed_by.get(j, 0) <= frozen[j]
    }
    assert not stale, (
        f"completed by the frozen run (job: frozen attempt, completed attempt): {stale}"
    )
    tally.check(reruns_allowed=True)
