"""The job lifecycle against a model: a hypothesis state machine over the SQL API.

Random sequences of enqueue, claim, complete, fail, lease expiry and recovery,
release, cancel, replay and late calls by workers that lost their job run
against the real functions; after every step the database must match a small
Python model: no job lost or duplicated, each in exactly one state, attempts
within bounds, leases held only by running jobs.

Backoff is 1 ms for every job, so a failed job is due again after a short
sleep; lease expiry is simulated by moving locked_until into the past.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.helpers import Claimed, rows, scalar

BACKOFF = "1 millisecond"


@dataclass
class ModelJob:
    state: str  # pending, running, completed, cancelled, dead
    attempt: int
    max_attempts: int
    priority: int
    token: uuid.UUID | None = None
    retried_as: int | None = None


class JobLifecycle(RuleBasedStateMachine):
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__()
        self.db = conn
        self.db.execute("DELETE FROM pyqueue.jobs; DELETE FROM pyqueue.dead_jobs")
        self.jobs: dict[int, ModelJob] = {}
        self.stale: list[tuple[int, uuid.UUID]] = []  # tokens of leases that were lost
        self.last_failure = 0.0

    # ------------------------------------------------------------ helpers

    def _in(self, *states: str) -> list[int]:
        return sorted(i for i, j in self.jobs.items() if j.state in states)

    def _lose_lease(self, job_id: int) -> None:
        model = self.jobs[job_id]
        assert model.token is not None
        self.stale.append((job_id, model.token))
        model.token = None

    # ------------------------------------------------------------ rules

    @rule(max_attempts=st.integers(min_value=1, max_value=3), priority=st.integers(0, 2))
    def enqueue(self, max_attempts: int, priority: int) -> None:
        job_id = scalar(
            self.db,
            "SELECT pyqueue.enqueue('m', '{}', max_attempts => %s, priority => %s,"
            " backoff_base => %s, backoff_max => %s)",
            [max_attempts, priority, BACKOFF, BACKOFF],
        )
        assert job_id not in self.jobs
        self.jobs[job_id] = ModelJob("pending", 0, max_attempts, priority)

    @rule(batch_size=st.integers(min_value=1, max_value=4))
    def claim(self, batch_size: int) -> None:
        # A retry is due 1 ms after its failure at most.
        wait = self.last_failure + 0.003 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        claimed = [
            Claimed(**r)
            for r in rows(
                self.db,
                "SELECT * FROM pyqueue.claim_batch(ARRAY['m'], 'model', %s, '1 hour')",
                [batch_size],
            )
        ]
        pending = self._in("pending")
        assert len(claimed) == min(batch_size, len(pending))
        ids = [c.id for c in claimed]
        assert len(set(ids)) == len(ids)
        assert set(ids) <= set(pending)
        priorities = [self.jobs[i].priority for i in ids]
        assert priorities == sorted(priorities, reverse=True)  # most urgent first
        if claimed:
            left = [self.jobs[i].priority for i in pending if i not in ids]
            assert all(p <= priorities[-1] for p in left)
        for c in claimed:
            model = self.jobs[c.id]
            model.attempt += 1
            assert (c.attempt, c.max_attempts) == (model.attempt, model.max_attempts)
            model.state, model.token = "running", c.lease_token

    @precondition(lambda self: self._in("running"))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._in("running")))
        model = self.jobs[job_id]
        assert scalar(self.db, "SELECT pyqueue.complete(%s, %s)", [job_id, model.token]) is True
        self._lose_lease(job_id)
        model.state = "completed"

    @precondition(lambda self: self._in("running"))
    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._in("running")))
        model = self.jobs[job_id]
        outcome = scalar(self.db, "SELECT pyqueue.fail(%s, %s, 'boom')", [job_id, model.token])
        expected = "dead" if model.attempt >= model.max_attempts else "pending"
        assert outcome == expected
        self._lose_lease(job_id)
        model.state = expected
        self.last_failure = time.monotonic()

    @precondition(lambda self: self._in("running"))
    @rule(data=st.data())
    def expire_and_recover(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._in("running")))
        model = self.jobs[job_id]
        self.db.execute(
            "UPDATE pyqueue.jobs SET locked_until = now() - interval '1 second' WHERE id = %s",
            [job_id],
        )
        assert scalar(self.db, "SELECT pyqueue.recover_expired()") == 1
        self._lose_lease(job_id)
        model.state = "dead" if model.attempt >= model.max_attempts else "pending"

    @precondition(lambda self: self._in("running"))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._in("running")))
        model = self.jobs[job_id]
        released = rows(self.db, "SELECT * FROM pyqueue.release(%s, %s)", [[job_id], [model.token]])
        assert [r["release"] for r in released] == [job_id]
        self._lose_lease(job_id)
        model.state, model.attempt = "pending", model.attempt - 1

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        model = self.jobs[job_id]
        expected = model.state in ("pending", "running")
        assert scalar(self.db, "SELECT pyqueue.cancel(%s)", [job_id]) is expected
        if model.state == "running":
            self._lose_lease(job_id)
        if expected:
            model.state = "cancelled"

    @precondition(lambda self: self._in("dead"))
    @rule(data=st.data())
    def retry_dead(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self._in("dead")))
        model = self.jobs[job_id]
        new_id = scalar(self.db, "SELECT pyqueue.retry_dead(%s)", [job_id])
        if model.retried_as is not None:
            assert new_id == model.retried_as
            return
        assert new_id not in self.jobs
        model.retried_as = new_id
        self.jobs[new_id] = ModelJob("pending", 0, model.max_attempts, model.priority)

    @precondition(lambda self: self.stale)
    @rule(data=st.data())
    def late_worker(self, data: st.DataObject) -> None:
        """A worker that lost its lease reports in: nothing changes, and it is told so."""
        job_id, token = data.draw(st.sampled_from(self.stale))
        assert scalar(self.db, "SELECT pyqueue.complete(%s, %s)", [job_id, token]) is False
        assert scalar(self.db, "SELECT pyqueue.fail(%s, %s, 'late')", [job_id, token]) == "lost"
        assert (
            scalar(self.db, "SELECT pyqueue.report_progress(%s, %s, 5)", [job_id, token]) is False
        )
        assert rows(self.db, "SELECT * FROM pyqueue.heartbeat(%s, %s)", [[job_id], [token]]) == []

    @rule()
    def heartbeat_everything(self) -> None:
        held = [(i, self.jobs[i].token) for i in self._in("running")]
        pairs = held + self.stale
        extended = rows(
            self.db,
            "SELECT * FROM pyqueue.heartbeat(%s, %s, '1 hour')",
            [[i for i, _ in pairs], [t for _, t in pairs]],
        )
        assert sorted(r["heartbeat"] for r in extended) == [i for i, _ in held]

    # ------------------------------------------------------------ invariants

    @invariant()
    def database_matches_the_model(self) -> None:
        found = rows(
            self.db,
            "SELECT id, status AS state, attempt, max_attempts, lease_token, 'jobs' AS tbl,"
            "       NULL::bigint AS retried_as"
            " FROM pyqueue.jobs"
            " UNION ALL"
            " SELECT id, 'dead', attempt, max_attempts, NULL, 'dead_jobs', retried_as"
            " FROM pyqueue.dead_jobs",
        )
        ids = [r["id"] for r in found]
        assert len(ids) == len(set(ids)), "a job is in both tables, or twice in one"
        assert set(ids) == set(self.jobs), "a job was lost or appeared from nowhere"
        for r in found:
            model = self.jobs[r["id"]]
            assert r["state"] == model.state, (r, model)
            assert r["attempt"] == model.attempt, (r, model)
            assert 0 <= r["attempt"] <= r["max_attempts"] == model.max_attempts
            assert r["lease_token"] == model.token, (r, model)
            assert r["retried_as"] == model.retried_as, (r, model)


def test_the_job_lifecycle_matches_its_model(db):
    run_state_machine_as_test(
        lambda: JobLifecycle(db),
        settings=settings(
            max_examples=200,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
