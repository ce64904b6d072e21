#!/usr/bin/env python3
"""Mutation testing of the SQL: can the tests tell a broken sql/ from a working one?

Each mutation below is a small, realistic bug (a fencing check dropped, SKIP LOCKED
removed, an option ignored). One at a time, the script copies sql/ to a
temporary folder, applies one mutation there, and runs the fast SQL tests against
a schema built from that copy (tests/conftest.py reads PYQUEUE_TEST_SQL_DIR). A
mutant is killed when a test fails; one that no test notices survived, and shows
a test that is missing. sql/ itself is never written.

    .venv/bin/python scripts/mutate.py            # every mutant
    .venv/bin/python scripts/mutate.py --list     # the list, without running
    .venv/bin/python scripts/mutate.py --only claim-skip-locked --only fail-off-by-one

Exit status: 0 when every mutant was killed, 1 otherwise, 2 when the list no
longer matches sql/ or the unmutated copy fails its tests.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SQL_DIR = REPO / "sql"

# The fast tests that call the SQL API: no worker processes, browsers or chaos.
# The quickest to fail most mutants first, as pytest stops at the first failure.
TEST_FILES = [
    "tests/test_sql_api.py",
    "tests/test_bad_input.py::test_through_sql",
    "tests/test_flow_sql.py",
    "tests/test_unique_modes.py",
    "tests/test_queue_permissions.py",
    "tests/test_job_transaction.py",
    "tests/test_timeouts_sql.py",
    "tests/test_maintenance_sql.py",
    "tests/test_schedules_sql.py",
    "tests/test_concurrency.py",
    "tests/test_properties.py",
    "tests/test_lifecycle_model.py",
    "tests/test_claim_plan.py",
]

# Longer than the whole fast suite takes on a slow machine: a mutant that makes
# a test hang is reported as such instead of stopping the run.
TIMEOUT_SECONDS = 600

# Every public function and view of schema pyqueue that the list must mutate at
# least once (views count as one).
PUBLIC_API = (
    "enqueue", "enqueue_batch", "claim_batch", "complete", "complete_batch", "fail",
    "fail_batch", "heartbeat", "release", "recover_expired", "report_progress", "cancel",
    "retry_dead", "purge", "configure_queue", "get_job", "list_jobs", "job_actions",
    "backoff_delay", "queue_settings", "maintain", "schedule", "unschedule", "views",
    "job_summaries", "claim_wait", "pause_queue", "resume_queue", "grant_queues",
    "revoke_queues", "complete_or_raise",
)  # fmt: skip

# Public functions no mutation needs: they return a constant.
CONSTANTS = ("schema_version", "schema_compatibility")


@dataclass(frozen=True)
class Mutation:
    name: str
    function: str  # the PUBLIC_API name whose body the snippet lies in
    file: str  # in sql/
    original: str  # must occur exactly once in the file
    replacement: str
    description: str


MUTATIONS = [
    # ---------------------------------------------------------------- enqueue
    Mutation(
        "enqueue-key-across-queues", "_enqueue_keyed", "12_unique.sql",
        "WHERE j.queue = _enqueue_keyed.queue AND j.idempotency_key",
        "WHERE j.idempotency_key",
        "enqueue looks a held idempotency key up in every queue, not its own",
    ),
    # ------------------------------------------------------- uniqueness modes
    Mutation(
        "unique-active-as-pending", "_key_holds", "12_unique.sql",
        "WHEN 'active' THEN status IN ('pending', 'running')",
        "WHEN 'active' THEN status = 'pending'",
        "unique_mode active frees the key once the job started, not once it finished",
    ),
    Mutation(
        "unique-debounce-keeps-start", "_enqueue_keyed", "12_unique.sql",
        "SET payload = _enqueue_keyed.payload, run_at = start",
        "SET payload = _enqueue_keyed.payload",
        "debounce replaces the payload but does not push the start",
    ),
    # ------------------------------------------------------------ flow control
    Mutation(
        "flow-concurrency-ignores-running", "_flow_allowances", "22_flow.sql",
        "greatest(0, q.concurrency - (",
        "greatest(0, q.concurrency + 0 * (",
        "the concurrency limit does not count the jobs already running",
    ),
    Mutation(
        "flow-pause-ignored", "_flow_allowances", "22_flow.sql",
        "IF q.paused_at IS NOT NULL THEN\n            allow := 0;",
        "IF false THEN\n            allow := 0;",
        "a paused queue is claimed",
    ),
    Mutation(
        "flow-ledger-not-written", "_flow_allowances", "22_flow.sql",
        "ON CONFLICT (queue) DO UPDATE SET claimed_at = now()",
        "ON CONFLICT (queue) DO NOTHING",
        "the claim neither writes the queue's ledger row nor reads its starts",
    ),
    Mutation(
        "enqueue-delay-ignored", "enqueue", "10_enqueue.sql",
        # The keyless insert's select list, indented deeper than the keyed one's.
        "SELECT enqueue.queue, enqueue.payload,\n"
        "                   coalesce(enqueue.run_at, now() + enqueue.delay, now()),",
        "SELECT enqueue.queue, enqueue.payload,\n"
        "                   coalesce(enqueue.run_at, now()),",
        "enqueue without a key ignores delay",
    ),
    Mutation(
        "batch-schedule-ignored", "enqueue_batch", "10_enqueue.sql",
        "SELECT p.id, enqueue_batch.queue, p.payload,\n"
        "               coalesce(enqueue_batch.run_at, now() + enqueue_batch.delay, now()),",
        "SELECT p.id, enqueue_batch.queue, p.payload,\n"
        "               now(),",
        "enqueue_batch without keys ignores run_at and delay",
    ),
    Mutation(
        "batch-max-attempts-ignored", "enqueue_batch", "10_enqueue.sql",
        "coalesce(enqueue_batch.max_attempts, settings.max_attempts), idempotency_keys[p.ord],",
        "settings.max_attempts, idempotency_keys[p.ord],",
        "enqueue_batch with keys ignores max_attempts",
    ),
    Mutation(
        "batch-key-across-queues", "enqueue_batch", "10_enqueue.sql",
        "AND held.queue = enqueue_batch.queue\n",
        "\n",
        "enqueue_batch looks held idempotency keys up in every queue, not its own",
    ),
    # ---------------------------------------------------------------- claim
    Mutation(
        "claim-skip-locked", "claim_batch", "20_claim.sql",
        "FOR UPDATE SKIP LOCKED",
        "FOR UPDATE",
        "claim_batch waits for rows another claim holds instead of skipping them",
    ),
    Mutation(
        "claim-not-due", "claim_batch", "20_claim.sql",
        "AND j.run_at <= now()\n",
        "\n",
        "claim_batch takes jobs that are not due yet",
    ),
    Mutation(
        "claim-order-run-at", "claim_batch", "20_claim.sql",
        "ORDER BY j.run_at, j.id\n",
        "ORDER BY j.id\n",
        "claim_batch takes jobs of one priority by id, not by run_at",
    ),
    Mutation(
        "claim-no-recovery", "claim_batch", "20_claim.sql",
        "PERFORM recover_expired();",
        "NULL;",
        "claim_batch no longer recovers expired leases",
    ),
    Mutation(
        "claim-lease-ignored", "claim_batch", "20_claim.sql",
        "locked_until = now() + least(claim_batch.lease, j.timeout),",
        "locked_until = now() + least(interval '30 seconds', j.timeout),",
        "claim_batch leases for the default 30 s whatever lease it is given",
    ),
    Mutation(
        "claim-progress-kept", "claim_batch", "20_claim.sql",
        "started_at   = now(),\n"
        "            progress     = NULL,\n"
        "            progress_message = NULL\n",
        "started_at   = now()\n",
        "claim_batch keeps the progress reported by the job's previous attempt",
    ),
    Mutation(
        "claim-ahead-from-limited", "claim_batch", "20_claim.sql",
        "batch_size := claim_batch.batch_size - claim_batch.ahead;",
        "batch_size := claim_batch.batch_size;",
        "claim_batch takes jobs ahead of free slots from a queue with a fleet-wide limit",
    ),
    Mutation(
        "claim-ahead-with-timeout", "claim_batch", "20_claim.sql",
        "OR j.timeout IS NULL",
        "OR true",
        "claim_batch takes jobs with a timeout ahead of free slots, to spend it waiting",
    ),
    Mutation(
        "release-counts-attempt", "release", "20_claim.sql",
        "attempt      = j.attempt - 1,",
        "attempt      = j.attempt,",
        "release counts the handed-back claim as an attempt",
    ),
    Mutation(
        "release-no-fencing", "release", "20_claim.sql",
        "WHERE j.id = h.id AND j.lease_token = h.token",
        "WHERE j.id = h.id AND j.status = 'running'",
        "release hands back a job whatever token it is given",
    ),
    # ---------------------------------------------------------------- complete
    Mutation(
        "complete-no-fencing", "complete", "30_complete.sql",
        "WHERE id = job_id AND status = 'running' AND lease_token = complete.lease_token\n",
        "WHERE id = job_id AND status = 'running'\n",
        "complete finishes a job whatever token it is given",
    ),
    Mutation(
        "complete-batch-no-fencing", "complete_batch", "30_complete.sql",
        "WHERE j.id = d.id AND j.lease_token = d.token",
        "WHERE j.id = d.id AND j.status = 'running'",
        "complete_batch finishes jobs whatever tokens it is given",
    ),
    Mutation(
        "complete-batch-results-shifted", "complete_batch", "30_complete.sql",
        "result       = results[d.ord],",
        "result       = results[1],",
        "complete_batch stores the first result for every job",
    ),
    # ---------------------------------------------------------------- fail
    Mutation(
        "fail-unknown-lost", "fail", "40_fail.sql",
        "IF outcome = 'lost' THEN\n        PERFORM _require_job(job_id);",
        "IF false THEN\n        PERFORM _require_job(job_id);",
        "fail answers 'lost' for an unknown job instead of raising",
    ),
    Mutation(
        "fail-batch-no-fencing", "fail_batch", "40_fail.sql",
        "          ON j.id = f.id AND j.lease_token = f.token\n        WHERE _in_time",
        "          ON j.id = f.id AND j.status = 'running'\n        WHERE _in_time",
        "fail_batch fails jobs whatever tokens it is given",
    ),
    Mutation(
        "fail-batch-past-timeout", "fail_batch", "40_fail.sql",
        "        WHERE _in_time(j.started_at, j.timeout)\n        ORDER BY j.id, f.ord",
        "        ORDER BY j.id, f.ord",
        "fail_batch still takes a failure from a worker whose run is past its timeout",
    ),
    Mutation(
        "fail-off-by-one", "_fail_locked", "40_fail.sql",
        "WHERE j.id = f.id AND j.attempt < j.max_attempts",
        "WHERE j.id = f.id AND j.attempt <= j.max_attempts",
        "a failure dead-letters a job one attempt late",
    ),
    Mutation(
        "fail-job-backoff-ignored", "_fail_locked", "40_fail.sql",
        "coalesce(j.backoff_base, s.backoff_base),",
        "s.backoff_base,",
        "a failure ignores the job's own backoff base",
    ),
    # ---------------------------------------------------------------- leases
    Mutation(
        "heartbeat-no-fencing", "heartbeat", "50_leases.sql",
        "WHERE j.id = h.id AND j.lease_token = h.token",
        "WHERE j.id = h.id AND j.status = 'running'",
        "heartbeat extends leases whatever tokens it is given",
    ),
    Mutation(
        "heartbeat-lease-ignored", "heartbeat", "50_leases.sql",
        "SET locked_until = least(now() + lease, j.started_at + j.timeout)",
        "SET locked_until = least(now() + interval '30 seconds', j.started_at + j.timeout)",
        "heartbeat extends by the default 30 s whatever lease it is given",
    ),
    Mutation(
        "heartbeat-past-timeout", "heartbeat", "50_leases.sql",
        "SET locked_until = least(now() + lease, j.started_at + j.timeout)",
        "SET locked_until = now() + lease",
        "heartbeat extends a lease past the run's timeout",
    ),
    Mutation(
        "progress-no-fencing", "report_progress", "50_leases.sql",
        "WHERE id = job_id AND status = 'running' AND lease_token = report_progress.lease_token\n",
        "WHERE id = job_id AND status = 'running'\n",
        "report_progress writes whatever token it is given",
    ),
    Mutation(
        "recover-early", "recover_expired", "50_leases.sql",
        "WHERE status = 'running' AND locked_until < now()",
        "WHERE status = 'running' AND locked_until < now() + interval '1 second'",
        "recover_expired takes leases a second before they run out",
    ),
    Mutation(
        "recover-last-attempt-stuck", "recover_expired", "50_leases.sql",
        "FILTER (WHERE in_time AND attempt >= max_attempts)",
        "FILTER (WHERE in_time AND attempt > max_attempts)",
        "recover_expired leaves a job on its last attempt running instead of dead-lettering it",
    ),
    # ---------------------------------------------------------------- admin
    Mutation(
        "recover-timeout-as-lease", "recover_expired", "50_leases.sql",
        "PERFORM _fail_locked(timed_out_ids, timeouts, NULL);",
        "retry_ids := retry_ids || timed_out_ids;",
        "recover_expired treats a timed-out run as a dead worker's: no backoff, no timeout error",
    ),
    Mutation(
        "cancel-finished", "cancel", "60_admin.sql",
        "WHERE id = job_id AND 'cancel' = ANY (job_actions(status));",
        "WHERE id = job_id;",
        "cancel also cancels finished jobs",
    ),
    Mutation(
        "actions-retry-replayed", "job_actions", "70_read.sql",
        "WHEN status = 'dead' AND retried_as IS NULL THEN ARRAY['retry']",
        "WHEN status = 'dead' THEN ARRAY['retry']",
        "job_actions offers to replay a dead letter already replayed",
    ),
    Mutation(
        "maintain-retention-ignored", "_purge_finished", "67_maintain.sql",
        "              SELECT coalesce(q.retention, d.retention)\n",
        "              SELECT d.retention\n",
        "maintenance applies the default retention to queues that have their own",
    ),
    Mutation(
        "maintain-unbounded", "_purge_finished", "67_maintain.sql",
        "        ORDER BY j.finished_at\n        LIMIT max_rows\n",
        "        ORDER BY j.finished_at\n",
        "a maintenance pass deletes every expired job at once, ignoring max_rows",
    ),
    Mutation(
        "maintain-every-ignored", "maintain", "67_maintain.sql",
        "    IF last_run > now() - every THEN",
        "    IF false THEN",
        "maintain runs a pass however recent the last one",
    ),
    Mutation(
        "maintain-no-lock", "maintain", "67_maintain.sql",
        "IF NOT pg_try_advisory_xact_lock(hashtext('pyqueue.maintain')) THEN",
        "IF false THEN",
        "maintain runs beside another session's pass",
    ),
    Mutation(
        "dead-retention-ignored", "_purge_dead", "67_maintain.sql",
        "        WHERE dj.dead_at < now() - s.dead_retention\n           OR ",
        "        WHERE ",
        "maintenance keeps dead letters past their dead_retention",
    ),
    Mutation(
        "forget-last-tick", "_forget_ticks", "67_maintain.sql",
        "          AND r.tick < (SELECT max(l.tick) FROM pyqueue.schedule_runs l\n"
        "                        WHERE l.schedule = r.schedule)\n",
        "",
        "maintenance forgets a schedule's last tick too",
    ),
    Mutation(
        "schedule-replace-skips-tick", "schedule", "65_schedules.sql",
        "CASE WHEN (s.cron, s.tz) = (excluded.cron, excluded.tz) THEN s.next_run_at\n"
        "                            ELSE excluded.next_run_at END,",
        "excluded.next_run_at,",
        "schedule() set again unchanged moves the next tick, skipping one that is due",
    ),
    Mutation(
        "fire-every-missed-tick", "_fire_schedules", "65_schedules.sql",
        "greatest(now(), due.next_run_at)",
        "due.next_run_at",
        "after downtime a schedule fires once per missed tick",
    ),
    Mutation(
        "fire-twice", "_fire_schedules", "65_schedules.sql",
        "        ON CONFLICT DO NOTHING;\n        IF FOUND THEN",
        "        ON CONFLICT DO NOTHING;\n        IF true THEN",
        "a tick already fired fires again",
    ),
    Mutation(
        "unschedule-keeps", "unschedule", "65_schedules.sql",
        "DELETE FROM cron_schedules WHERE name = unschedule.name;",
        "PERFORM 1 FROM cron_schedules WHERE name = unschedule.name;",
        "unschedule says it removed the schedule but keeps it",
    ),
    Mutation(
        "retry-dead-twice", "retry_dead", "60_admin.sql",
        "IF dead.retried_as IS NOT NULL THEN",
        "IF false THEN",
        "retry_dead replays the same dead letter again",
    ),
    Mutation(
        "purge-unreplayed-dead", "purge", "60_admin.sql",
        # Dropping the retried_as test alone changes nothing: retried_at is NULL too.
        "AND dj.retried_as IS NOT NULL\n"
        "      AND (queue IS NULL OR dj.queue = queue)\n"
        "      AND dj.retried_at < now()",
        "AND (queue IS NULL OR dj.queue = queue)\n"
        "      AND coalesce(dj.retried_at, dj.dead_at) < now()",
        "purge deletes dead letters past the retention, replayed or not",
    ),
    Mutation(
        "purge-queue-retention-ignored", "purge", "60_admin.sql",
        "(SELECT own.retention FROM queues own WHERE own.name = j.queue),",
        "NULL,",
        "purge applies the default retention to queues that have their own",
    ),
    # ---------------------------------------------------------------- queues
    Mutation(
        "configure-null-resets", "configure_queue", "02_queues.sql",
        "SET max_attempts = coalesce(excluded.max_attempts, q.max_attempts),",
        "SET max_attempts = excluded.max_attempts,",
        "configure_queue resets max_attempts when it is not given",
    ),
    Mutation(
        "settings-queue-backoff-ignored", "queue_settings", "02_queues.sql",
        "coalesce(q.backoff_base, d.backoff_base),",
        "d.backoff_base,",
        "queue_settings ignores a queue's own backoff base",
    ),
    Mutation(
        "backoff-cap-ignored", "backoff_delay", "02_queues.sql",
        "extract(epoch FROM cap)\n",
        "'infinity'::double precision\n",
        "backoff_delay ignores its cap",
    ),
    # ---------------------------------------------------------------- reading
    Mutation(
        "get-job-unknown-null", "get_job", "70_read.sql",
        "IF NOT FOUND THEN\n        PERFORM _job_not_found(job_id);\n    END IF;\n    RETURN job;",
        "RETURN job;",
        "get_job returns a row of NULLs for an unknown id instead of raising",
    ),
    Mutation(
        "list-status-ignored", "list_jobs", "70_read.sql",
        "WHERE (status IS NULL OR a.status = status)",
        "WHERE true",
        "list_jobs ignores its status filter",
    ),
    Mutation(
        "stats-due-ignores-run-at", "views", "80_views.sql",
        "count(*) FILTER (WHERE status = 'pending' AND run_at <= now())     AS due,",
        "count(*) FILTER (WHERE status = 'pending')                         AS due,",
        "queue_stats counts scheduled jobs as due",
    ),
    Mutation(
        "summaries-oldest-first", "job_summaries", "70_read.sql",
        "    ORDER BY a.id DESC\n    LIMIT job_summaries.max_rows;",
        "    ORDER BY a.id\n    LIMIT job_summaries.max_rows;",
        "job_summaries pages from the oldest job, not the newest",
    ),
    # ------------------------------------------------------- flow and grants
    Mutation(
        "pause-ignored-by-claim-wait", "claim_wait", "22_flow.sql",
        "CONTINUE WHEN q.paused_at IS NOT NULL;",
        "CONTINUE WHEN false;",
        "claim_wait tells the worker to wait for a NOTIFY on a paused queue",
    ),
    Mutation(
        "pause-moves-its-time", "pause_queue", "22_flow.sql",
        "SET paused_at = coalesce(q.paused_at, excluded.paused_at), updated_at = now()",
        "SET paused_at = excluded.paused_at, updated_at = now()",
        "pausing a paused queue moves the time it was paused",
    ),
    Mutation(
        "resume-always-true", "resume_queue", "22_flow.sql",
        "WHERE name = resume_queue.queue AND paused_at IS NOT NULL;",
        "WHERE name = resume_queue.queue;",
        "resume_queue says a queue that was not paused was",
    ),
    Mutation(
        "grant-replaces-actions", "grant_queues", "03_permissions.sql",
        "SET actions = ARRAY(SELECT DISTINCT a FROM unnest(g.actions || excluded.actions) a"
        " ORDER BY a),",
        "SET actions = excluded.actions,",
        "a second grant on a pattern replaces its actions instead of adding to them",
    ),
    Mutation(
        "revoke-last-grant-allowed", "revoke_queues", "03_permissions.sql",
        "AND NOT EXISTS (SELECT 1 FROM queue_grants g\n"
        "                       WHERE g.role = revoke_queues.role"
        " AND g.pattern <> revoke_queues.pattern) THEN",
        "AND false THEN",
        "revoke_queues removes a role's last grant, leaving it unrestricted",
    ),
    Mutation(
        "complete-or-raise-silent", "complete_or_raise", "30_complete.sql",
        "    IF NOT complete(job_id, lease_token, result) THEN",
        "    IF NOT complete(job_id, lease_token, result) AND false THEN",
        "complete_or_raise returns quietly for a job the caller no longer holds",
    ),
]  # fmt: skip


class ListDrifted(Exception):
    """A mutation's snippet does not occur exactly once: the list no longer fits sql/."""


def snippet_count(mutation: Mutation, sql_dir: Path = SQL_DIR) -> int:
    return (sql_dir / mutation.file).read_text().count(mutation.original)


def function_body(text: str, function: str) -> str:
    """The text from `FUNCTION pyqueue.<function>(` to the next CREATE statement.

    Anchored on the name, not on the CREATE line, so that CREATE and CREATE OR
    REPLACE both match. For "views", the text from the first view on.
    """
    header = r"\bVIEW pyqueue\.\w+" if function == "views" else rf"\bFUNCTION pyqueue\.{function}\("
    start = re.search(header, text)
    if start is None:
        return ""
    if function == "views":
        return text[start.start() :]
    end = text.find("\nCREATE ", start.end())
    return text[start.start() : end if end >= 0 else len(text)]


def check_list(sql_dir: Path = SQL_DIR) -> list[str]:
    """What is wrong with the list against sql/: an empty list means it fits."""
    problems = []
    names = [m.name for m in MUTATIONS]
    problems += [f"duplicate name {n}" for n in sorted({n for n in names if names.count(n) > 1})]
    for m in MUTATIONS:
        count = snippet_count(m, sql_dir)
        if count != 1:
            problems.append(f"{m.name}: its snippet occurs {count} times in sql/{m.file}")
        elif m.original not in function_body((sql_dir / m.file).read_text(), m.function):
            problems.append(f"{m.name}: its snippet is not in the body of {m.function}")
    missing = set(PUBLIC_API) - {m.function for m in MUTATIONS}
    problems += [f"no mutation of {f}" for f in sorted(missing)]
    return problems


def apply(mutation: Mutation, sql_dir: Path) -> None:
    """Rewrite the copy of sql/ in sql_dir with the mutation applied."""
    path = sql_dir / mutation.file
    text = path.read_text()
    count = text.count(mutation.original)
    if count != 1:
        raise ListDrifted(f"{mutation.name}: its snippet occurs {count} times in {mutation.file}")
    path.write_text(text.replace(mutation.original, mutation.replacement))


@dataclass
class Outcome:
    result: str  # killed, survived, broken (the schema did not load), hung, error
    detail: str  # the first failing test, or what went wrong
    seconds: float


def first_line_starting(output: str, prefix: str) -> str | None:
    """The rest of the first line of pytest's summary that starts with prefix."""
    for line in output.splitlines():
        if line.startswith(prefix):
            return line[len(prefix) :]
    return None


def run_tests(sql_dir: Path) -> Outcome:
    """The fast SQL tests against a schema built from sql_dir, stopping at the first failure."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TEST_FILES]
    env = {**os.environ, "PYQUEUE_TEST_SQL_DIR": str(sql_dir)}
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        return Outcome("hung", f"no result after {TIMEOUT_SECONDS} s", TIMEOUT_SECONDS)
    seconds = time.monotonic() - started
    failed = first_line_starting(done.stdout, "FAILED ")
    errored = first_line_starting(done.stdout, "ERROR ")
    if done.returncode == 0:
        return Outcome("survived", "", seconds)
    if done.returncode == 1 and failed:
        return Outcome("killed", failed.split(" - ")[0], seconds)
    if done.returncode == 1 and errored:
        # Only setup errors: the schema did not load, which says nothing of the tests.
        return Outcome("broken", errored[:160], seconds)
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:] or ["no output"]
    return Outcome("error", f"pytest exit {done.returncode}: {tail[0]}", seconds)


def run_mutant(mutation: Mutation | None, workdir: Path) -> Outcome:
    """Copy sql/, apply the mutation (None: the control, unmutated), run the tests."""
    sql_dir = workdir / (mutation.name if mutation else "control")
    shutil.copytree(SQL_DIR, sql_dir)
    if mutation is not None:
        apply(mutation, sql_dir)
    return run_tests(sql_dir)


def print_row(name: str, outcome: Outcome, result: str | None = None) -> None:
    result = result or outcome.result
    print(f"{name:32} {result:9} {outcome.seconds:5.0f} s  {outcome.detail}", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="run this mutant only (repeatable)"
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:32} {m.function:16} {m.description}")
        return 0
    problems = check_list()
    if problems:
        print("the mutation list does not fit sql/:", *problems, sep="\n  ", file=sys.stderr)
        return 2
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    unknown = set(args.only or []) - {m.name for m in MUTATIONS}
    if unknown:
        print(f"no such mutant: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pyqueue-mutate-") as tmp:
        workdir = Path(tmp)
        print(f"{'mutant':32} {'result':9} {'time':>7}  first failing test", flush=True)
        control = run_mutant(None, workdir)
        passed = control.result == "survived"
        print_row("(control: sql/ unmutated)", control, "passed" if passed else None)
        if not passed:
            print("the unmutated sql/ must pass its tests; stopping", file=sys.stderr)
            return 2
        outcomes = {}
        for mutation in chosen:
            outcomes[mutation.name] = run_mutant(mutation, workdir)
            print_row(mutation.name, outcomes[mutation.name])
    not_killed = [name for name, o in outcomes.items() if o.result != "killed"]
    minutes = (time.monotonic() - started) / 60
    killed = len(outcomes) - len(not_killed)
    print(f"\n{killed} of {len(outcomes)} mutants killed in {minutes:.1f} min")
    if not_killed:
        print("not killed:", ", ".join(not_killed))
    return 1 if not_killed else 0


if __name__ == "__main__":
    sys.exit(main())
