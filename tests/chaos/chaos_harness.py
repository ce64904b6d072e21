"""The machinery of the chaos tests: worker processes, the ledger, and the tally.

A scenario prepares a database (`prepare`), starts a `Fleet` of real worker
processes (`pyqueue worker tests.chaos.chaos_worker:worker`), enqueues jobs,
does its damage, waits until nothing is pending or running, and ends with
`Tally.of(...)` and `Tally.check()`:

- every job enqueued was completed, or dead-lettered if designed to fail
  (none lost);
- no job was completed twice: a trigger on pyqueue.jobs records every update
  that sets status 'completed', and each job has exactly one;
- every completion belongs to a run that really finished: the handler wrote
  its 'end' row for that job and attempt;
- every job designed to succeed left its effect in chaos_effects (once: the
  handler writes it idempotently, as the README's Guarantees advises);
- runs beyond the first, counted from the handlers' 'start' rows, are
  reported and allowed only where the scenario says a crash forced them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from tests.chaos.chaos_worker import EFFECTS_DDL, LEDGER_DDL, QUEUE

REPO = Path(__file__).resolve().parents[2]
WORKER_APP = "pyqueue-chaos-worker"  # application_name of every worker connection
HARNESS_APP = "pyqueue-chaos-harness"

AUDIT_DDL = """
CREATE TABLE chaos_completions (
    job_id  bigint  NOT NULL,
    attempt integer NOT NULL,
    worker  text,
    at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION chaos_audit_completion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.chaos_completions (job_id, attempt, worker)
    VALUES (NEW.id, NEW.attempt, NEW.worker);
    RETURN NULL;
END;
$$;
-- Fires for every update that leaves a job completed, a second one included.
CREATE TRIGGER chaos_audit_completion AFTER UPDATE OF status ON pyqueue.jobs
FOR EACH ROW WHEN (NEW.status = 'completed') EXECUTE FUNCTION chaos_audit_completion();
"""


def jobs_per_scenario() -> int:
    """PYQUEUE_CHAOS_JOBS: the size of each scenario (CI's short form by default)."""
    return int(os.environ.get("PYQUEUE_CHAOS_JOBS", "200"))


def harness_connect(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(make_conninfo(dsn, application_name=HARNESS_APP), autocommit=True)


def prepare(conn: psycopg.Connection[Any]) -> None:
    """Ledger, completion audit, and a queue whose retries come quickly."""
    conn.execute(LEDGER_DDL)
    conn.execute(EFFECTS_DDL)
    conn.execute(AUDIT_DDL)
    conn.execute(
        "SELECT pyqueue.configure_queue(%s, backoff_base => '50 ms', backoff_max => '200 ms')",
        [QUEUE],
    )


def enqueue(
    conn: psycopg.Connection[Any],
    durations: list[float],
    *,
    failing: int = 0,
    max_attempts: int = 3,
) -> list[int]:
    """Jobs that run for the given seconds each, plus `failing` designed to fail."""
    payloads = [json.dumps({"seconds": d}) for d in durations]
    payloads += [json.dumps({"fail": True})] * failing
    rows = conn.execute(
        "SELECT * FROM pyqueue.enqueue_batch(%s, %s::jsonb[], max_attempts => %s)",
        [QUEUE, payloads, max_attempts],
    ).fetchall()
    return [r[0] for r in rows]


def durations(count: int, low: float, high: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [round(rng.uniform(low, high), 3) for _ in range(count)]


def unfinished(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pyqueue.jobs WHERE status IN ('pending', 'running')"
    ).fetchone()
    assert row is not None
    return int(row[0])


def in_flight(conn: psycopg.Connection[Any]) -> dict[int, list[int]]:
    """pid -> jobs whose run in that worker started and has not ended."""
    rows = conn.execute(
        """
        SELECT s.pid, array_agg(s.job_id ORDER BY s.job_id) FROM chaos_ledger s
        WHERE s.event = 'start'
          AND NOT EXISTS (SELECT FROM chaos_ledger e WHERE e.event = 'end' AND e.job_id = s.job_id
                          AND e.attempt = s.attempt AND e.pid = s.pid)
        GROUP BY s.pid
        """
    ).fetchall()
    return {pid: jobs for pid, jobs in rows}


def wait_drained(conn: psycopg.Connection[Any], timeout: float, fleet: Fleet | None = None) -> None:
    """Until no job is pending or running; fail with the workers' logs after `timeout`."""
    deadline = time.monotonic() + timeout
    while (left := unfinished(conn)) > 0:
        if time.monotonic() > deadline:
            logs = fleet.log_tails() if fleet is not None else ""
            raise AssertionError(f"{left} job(s) still unfinished after {timeout:.0f} s\n{logs}")
        time.sleep(0.2)


class WorkerProcess:
    """One `pyqueue worker` process, its output in a log file."""

    def __init__(self, dsn: str, log: Path, env: dict[str, str], concurrency: int) -> None:
        self.log = log
        worker_dsn = make_conninfo(dsn, application_name=WORKER_APP)
        command = [
            sys.executable, "-m", "pyqueue.cli", "--database-url", worker_dsn,
            "worker", "tests.chaos.chaos_worker:worker",
            "--concurrency", str(concurrency), "--poll-interval", "0.5",
        ]  # fmt: skip
        environment = {**os.environ, **env, "PYQUEUE_CHAOS_DSN": worker_dsn}
        with log.open("w") as out:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=environment, stdout=out, stderr=subprocess.STDOUT
            )
        self.pid = self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def ready(self) -> bool:
        """Whether it has started working (and so acts on SIGTERM as a worker)."""
        return " started: queues " in self.log.read_text(errors="replace")

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace").splitlines()[-lines:]
        return f"--- worker {self.pid} ({self.log.name}) ---\n" + "\n".join(text)


class Fleet:
    """Worker processes against one database; whatever is left is killed at close()."""

    def __init__(
        self, dsn: str, log_dir: Path, *, lease: float, heartbeat: float | None = None
    ) -> None:
        self.dsn = dsn
        self.log_dir = log_dir
        self.env = {"PYQUEUE_CHAOS_LEASE": str(lease)}
        if heartbeat is not None:
            self.env["PYQUEUE_CHAOS_HEARTBEAT"] = str(heartbeat)
        self.started: list[WorkerProcess] = []
        self.kills = 0

    def start(self, count: int = 1, concurrency: int = 4) -> list[WorkerProcess]:
        new = []
        for _ in range(count):
            log = self.log_dir / f"worker-{len(self.started) + 1}.log"
            new.append(WorkerProcess(self.dsn, log, self.env, concurrency))
            self.started.extend(new[-1:])
        return new

    @property
    def running(self) -> list[WorkerProcess]:
        return [w for w in self.started if w.alive]

    def kill9(self, victim: WorkerProcess) -> None:
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(10)
        self.kills += 1

    def assert_all_alive(self) -> None:
        dead = [w for w in self.started if not w.alive and w.process.returncode != -signal.SIGKILL]
        assert not dead, "worker(s) exited by themselves:\n" + "\n".join(w.tail() for w in dead)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every running worker has started working (Python takes a while to start)."""
        deadline = time.monotonic() + timeout
        while not all(w.ready for w in self.running):
            assert time.monotonic() < deadline, "workers did not start\n" + self.log_tails()
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every running worker; each must exit 0 within `timeout`."""
        # A worker still importing would die of SIGTERM's default action.
        self.wait_ready()
        running = self.running
        for w in running:
            w.process.send_signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            w.process.send_signal(signal.SIGTERM)
        for w in running:
            try:
                code = w.process.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"worker did not stop on SIGTERM\n{w.tail()}") from None
            assert code == 0, f"worker exited with {code}\n{w.tail()}"

    def close(self) -> None:
        for w in self.started:
            if w.alive:
                w.process.send_signal(signal.SIGCONT)
                w.process.kill()
                w.process.wait()

    def log_tails(self) -> str:
        return "\n".join(w.tail() for w in self.started)


@dataclass
class Tally:
    """What happened to the jobs of one scenario, read from the database."""

    enqueued: int
    completed: int
    dead: int  # dead-lettered, all of them designed to fail
    reran: int  # jobs (not designed to fail) whose handler started more than once
    completed_twice: int  # jobs with more than one update to 'completed'
    completed_without_end: int  # completions with no finished run of that attempt
    missing_effects: int  # jobs designed to succeed with no effect row
    lost: int  # neither completed nor (if designed to fail) dead-lettered
    misplaced: list[str]  # what went wrong with the lost jobs, for the message

    @classmethod
    def of(
        cls, conn: psycopg.Connection[Any], normal_ids: list[int], failing_ids: list[int]
    ) -> Tally:
        def scalar(query: str, params: list[Any]) -> int:
            row = conn.execute(query, params).fetchone()
            assert row is not None
            return int(row[0])

        completed = scalar(
            "SELECT count(*) FROM pyqueue.jobs WHERE id = ANY(%s) AND status = 'completed'",
            [normal_ids],
        )
        dead = scalar("SELECT count(*) FROM pyqueue.dead_jobs WHERE id = ANY(%s)", [failing_ids])
        misplaced = [
            f"job {i}: {status} after {attempt} attempt(s): {error}"
            for i, status, attempt, error in conn.execute(
                """
                SELECT x.id, coalesce(a.status, 'missing'), a.attempt, left(a.error, 200)
                FROM unnest(%s::bigint[], %s::text[]) AS x(id, expected)
                LEFT JOIN pyqueue.all_jobs a ON a.id = x.id
                WHERE a.status IS DISTINCT FROM x.expected
                ORDER BY x.id
                """,
                [
                    normal_ids + failing_ids,
                    ["completed"] * len(normal_ids) + ["dead"] * len(failing_ids),
                ],
            )
        ]
        reran = scalar(
            """
            SELECT count(*) FROM (
                SELECT job_id FROM chaos_ledger
                WHERE event = 'start' AND job_id = ANY(%s)
                GROUP BY job_id HAVING count(*) > 1
            ) AS r
            """,
            [normal_ids],
        )
        completed_twice = scalar(
            "SELECT count(*) FROM (SELECT job_id FROM chaos_completions"
            " GROUP BY job_id HAVING count(*) > 1) AS c",
            [],
        )
        completed_without_end = scalar(
            """
            SELECT count(*) FROM chaos_completions c
            WHERE NOT EXISTS (SELECT FROM chaos_ledger l
                              WHERE l.job_id = c.job_id AND l.attempt = c.attempt
                                AND l.event = 'end')
            """,
            [],
        )
        effects = scalar("SELECT count(*) FROM chaos_effects WHERE job_id = ANY(%s)", [normal_ids])
        return cls(
            enqueued=len(normal_ids) + len(failing_ids),
            completed=completed,
            dead=dead,
            reran=reran,
            completed_twice=completed_twice,
            completed_without_end=completed_without_end,
            missing_effects=len(normal_ids) - effects,
            lost=len(misplaced),
            misplaced=misplaced,
        )

    def line(self, scenario: str, extra: str = "") -> str:
        return (
            f"{scenario}: enqueued {self.enqueued}, completed {self.completed}, "
            f"dead-lettered as designed {self.dead}, executed more than once {self.reran}, "
            f"completed twice {self.completed_twice}, lost {self.lost}"
            + (f" ({extra})" if extra else "")
        )

    def check(self, *, reruns_allowed: bool) -> None:
        assert self.lost == 0, f"{self.lost} job(s) lost: {self.misplaced[:20]}"
        assert self.completed_twice == 0, f"{self.completed_twice} job(s) completed twice"
        assert self.completed_without_end == 0, (
            f"{self.completed_without_end} completion(s) of a run that never finished"
        )
        assert self.missing_effects == 0, f"{self.missing_effects} job(s) left no effect"
        if not reruns_allowed:
            assert self.reran == 0, f"{self.reran} job(s) ran more than once without a crash"
