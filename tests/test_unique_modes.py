"""Uniqueness modes of idempotency keys against a model (hypothesis state
machine over the SQL API), and under concurrent enqueues.

The model holds every job: its key, status, payload, whether its key was
released, whether it is older than the period, and whether it is due. Each
enqueue must return the job the model says (an existing one, or a new one),
and after every step the database must hold exactly the model's jobs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tests.helpers import rows, scalar

MODES = ["until_purged", "pending", "active", "throttle", "debounce"]
KEYS = ["a", "b", "c"]
PERIOD = "1 hour"


@dataclass
class ModelJob:
    key: str
    status: str  # pending, running, completed, cancelled
    payload: int
    due: bool
    old: bool = False
    released: bool = False
    token: Any = None


def holds(job: ModelJob, mode: str) -> bool:
    """Whether `job` still holds its key for an enqueue in `mode` (sql/12_unique.sql)."""
    return {
        "until_purged": True,
        "pending": job.status == "pending",
        "debounce": job.status == "pending",
        "active": job.status in ("pending", "running"),
        "throttle": not job.old,
    }[mode]


class UniqueModes(RuleBasedStateMachine):
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        super().__init__()
        self.db = conn
        self.db.execute("DELETE FROM pyqueue.jobs")
        self.jobs: dict[int, ModelJob] = {}

    def _expect(self, key: str, mode: str, payload: int) -> int | None:
        """Apply an enqueue to the model: the id it returns, None for a new job."""
        holder = next((i for i, j in self.jobs.items() if j.key == key and not j.released), None)
        if holder is not None:
            job = self.jobs[holder]
            if holds(job, mode):
                if mode == "debounce":
                    job.payload, job.due = payload, False
                return holder
            job.released = True
        return None

    def _added(
        self, job_id: int, expected: int | None, key: str, mode: str, payload: int, newer: int
    ) -> None:
        """Check an enqueue's id: the expected job's, or a new one above `newer`."""
        if expected is not None:
            assert job_id == expected, (job_id, expected, key, mode)
            return
        assert job_id not in self.jobs and job_id > newer, (job_id, mode)
        self.jobs[job_id] = ModelJob(key, "pending", payload, due=mode != "debounce")

    @rule(key=st.sampled_from(KEYS), mode=st.sampled_from(MODES), payload=st.integers(0, 99))
    def enqueue(self, key: str, mode: str, payload: int) -> None:
        newer = max(self.jobs, default=0)
        expected = self._expect(key, mode, payload)
        job_id = scalar(
            self.db,
            "SELECT pyqueue.enqueue('u', %s::jsonb, idempotency_key => %s, unique_mode => %s,"
            " unique_period => %s)",
            [str(payload), key, mode, PERIOD],
        )
        self._added(job_id, expected, key, mode, payload, newer)

    @rule(
        keys=st.lists(st.sampled_from(KEYS), min_size=2, max_size=2, unique=True),
        mode=st.sampled_from(MODES),
        payload=st.integers(0, 99),
    )
    def enqueue_batch(self, keys: list[str], mode: str, payload: int) -> None:
        ids = [
            r[0]
            for r in self.db.execute(
                "SELECT pyqueue.enqueue_batch('u', ARRAY[%s, %s]::jsonb[],"
                " idempotency_keys => %s, unique_mode => %s, unique_period => %s)",
                [str(payload), str(payload + 1), keys, mode, PERIOD],
            )
        ]
        # Keys are taken in key order, each as one enqueue; a batch's new ids
        # follow the payloads' order.
        newer = max(self.jobs, default=0)
        for ord_, key in sorted(enumerate(keys), key=lambda p: p[1]):
            expected = self._expect(key, mode, payload + ord_)
            self._added(ids[ord_], expected, key, mode, payload + ord_, newer)

    @rule()
    def claim(self) -> None:
        got = rows(self.db, "SELECT * FROM pyqueue.claim_batch(ARRAY['u'], 'm', 1)")
        due = {i for i, j in self.jobs.items() if j.status == "pending" and j.due}
        if not due:
            assert got == []
            return
        assert len(got) == 1 and got[0]["id"] in due, (got, due)
        job = self.jobs[got[0]["id"]]
        job.status, job.token = "running", got[0]["lease_token"]

    @rule(cancel=st.booleans())
    def finish(self, cancel: bool) -> None:
        running = sorted(i for i, j in self.jobs.items() if j.status == "running")
        if not running:
            return
        job = self.jobs[running[0]]
        if cancel:
            assert scalar(self.db, "SELECT pyqueue.cancel(%s)", [running[0]])
            job.status = "cancelled"
        else:
            assert scalar(self.db, "SELECT pyqueue.complete(%s, %s)", [running[0], job.token])
            job.status = "completed"
        job.token = None

    @rule()
    def age(self) -> None:
        """Two hours pass: throttle periods end, debounced jobs become due."""
        self.db.execute(
            "UPDATE pyqueue.jobs SET created_at = created_at - interval '2 hours',"
            " run_at = run_at - interval '2 hours'"
        )
        for job in self.jobs.values():
            job.old, job.due = True, True

    @rule()
    def purge(self) -> None:
        self.db.execute("SELECT pyqueue.purge(interval '0')")
        for job_id in [i for i, j in self.jobs.items() if j.status in ("completed", "cancelled")]:
            del self.jobs[job_id]

    @invariant()
    def database_matches_model(self) -> None:
        found = {
            r["id"]: (r["idempotency_key"], r["status"], r["payload"], r["released"], r["due"])
            for r in rows(
                self.db,
                "SELECT id, idempotency_key, status, payload, key_released_at IS NOT NULL"
                " AS released, run_at <= now() AS due FROM pyqueue.jobs",
            )
        }
        model = {
            i: (j.key, j.status, j.payload, j.released, found.get(i, (0,) * 5)[4])
            for i, j in self.jobs.items()
        }
        assert found == model
        for i, j in self.jobs.items():
            if j.status == "pending":
                assert found[i][4] == j.due, (i, j)


def test_uniqueness_modes_match_their_model(db: psycopg.Connection[Any]) -> None:
    run_state_machine_as_test(
        lambda: UniqueModes(db),
        settings=settings(
            max_examples=60,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )


def test_concurrent_enqueues_of_one_key(dsn: str, db: psycopg.Connection[Any]) -> None:
    """Eight sessions enqueue one key in every mode while another claims and
    completes: no error, and never two pending jobs holding the key."""
    errors: list[BaseException] = []
    stop = threading.Event()
    returned: set[int] = set()

    def producer(n: int) -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                for i in range(25):
                    mode = MODES[(n + i) % len(MODES)]
                    row = conn.execute(
                        "SELECT pyqueue.enqueue('race', %s::jsonb, idempotency_key => 'k',"
                        " unique_mode => %s, unique_period => '1 hour', delay => '0 s')",
                        [str(i), mode],
                    ).fetchone()
                    assert row is not None
                    returned.add(row[0])
        except BaseException as error:
            errors.append(error)

    def worker() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                while not stop.is_set():
                    for job_id, token in conn.execute(
                        "SELECT id, lease_token FROM pyqueue.claim_batch(ARRAY['race'], 'w', 5)"
                    ).fetchall():
                        conn.execute("SELECT pyqueue.complete(%s, %s)", [job_id, token])
                    # a debounced job is due only later: make it due now
                    conn.execute(
                        "UPDATE pyqueue.jobs SET run_at = now() WHERE queue = 'race'"
                        " AND status = 'pending'"
                    )
        except BaseException as error:
            errors.append(error)

    claimer = threading.Thread(target=worker)
    claimer.start()
    producers = [threading.Thread(target=producer, args=(n,)) for n in range(8)]
    for thread in producers:
        thread.start()
    for thread in producers:
        thread.join(60)
    stop.set()
    claimer.join(30)
    assert errors == []
    jobs = rows(db, "SELECT * FROM pyqueue.jobs WHERE queue = 'race'")
    assert {j["id"] for j in jobs} == returned
    holding = [j for j in jobs if j["key_released_at"] is None]
    assert len(holding) == 1
    assert sum(1 for j in jobs if j["status"] == "pending") <= 1
