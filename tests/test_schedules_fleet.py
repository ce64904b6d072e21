"""A schedule every minute, fired by three real worker processes: one job per minute.

The workers fire schedules through their maintenance passes, nothing else; the
test only watches. It runs for two minute boundaries, about two minutes.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest

from tests.helpers import rows, scalar
from tests.test_worker_processes import workers  # noqa: F401  (a fixture)
from tests.workers_for_tests import LEDGER_DDL

pytestmark = pytest.mark.slow

TICKS = 2


def test_three_workers_fire_each_minute_of_a_schedule_exactly_once(db, workers):  # noqa: F811
    db.execute(LEDGER_DDL)
    first = scalar(db, "SELECT pyqueue.schedule('every-minute', '* * * * *', 'ledger')")
    fleet = [workers("--maintenance-interval", "0.5") for _ in range(3)]

    deadline = time.monotonic() + 60 * (TICKS + 1)
    fired = "SELECT count(*) FROM pyqueue.schedule_runs"
    while scalar(db, fired) < TICKS:
        assert time.monotonic() < deadline, f"only {scalar(db, fired)} ticks fired"
        for worker in fleet:
            assert worker.process.poll() is None, worker.output()
        time.sleep(0.5)
    done = "SELECT count(*) FROM pyqueue.jobs WHERE queue = 'ledger' AND status = 'completed'"
    while scalar(db, done) < TICKS:
        assert time.monotonic() < deadline, "the fired jobs did not run"
        time.sleep(0.2)
    for worker in fleet:
        worker.signal(signal.SIGTERM)
    for worker in fleet:
        assert worker.wait(30) == 0, worker.output()

    runs = rows(db, "SELECT tick, job_id FROM pyqueue.schedule_runs ORDER BY tick")
    jobs = rows(db, "SELECT id, run_at FROM pyqueue.jobs WHERE queue = 'ledger' ORDER BY id")
    # Consecutive minutes from the first tick, one job each, due at its tick...
    ticks = [r["tick"] for r in runs]
    assert ticks == [first + timedelta(minutes=i) for i in range(len(ticks))]
    assert [(j["id"], j["run_at"]) for j in jobs] == [(r["job_id"], r["tick"]) for r in runs]
    # ...and each ran once, whichever worker took it.
    assert scalar(db, "SELECT count(*) FROM ledger WHERE event = 'end'") == len(jobs)
    assert scalar(db, "SELECT count(DISTINCT job_id) FROM ledger") == len(jobs)
