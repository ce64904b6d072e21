"""The `pyqueue` command line, end to end: real processes against the test database."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

PYQUEUE = [sys.executable, "-m", "pyqueue.cli"]
REPO = Path(__file__).resolve().parent.parent


def run(dsn: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": dsn}
    result = subprocess.run(
        [*PYQUEUE, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert result.returncode == code
    assert text in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 3


def test_migrate_is_idempotent(dsn):
    assert "applied 0 migration(s)" in run(dsn, "migrate").stdout


def test_enqueue_then_inspect(dsn):
    job_id = int(run(dsn, "enqueue", "emails.send", '{"to": "ada@example.com"}').stdout)
    again = run(dsn, "enqueue", "emails.send", "{}", "--idempotency-key", "k1").stdout
    same = run(dsn, "enqueue", "emails.send", "{}", "--idempotency-key", "k1").stdout
    assert again == same

    shown = run(dsn, "job", str(job_id)).stdout
    assert "status: pending" in shown
    assert "actions: cancel" in shown  # as job_actions() says, not decided here
    assert '"to": "ada@example.com"' in shown

    listed = run(dsn, "jobs", "--status", "pending", "--queue", "emails.send").stdout
    assert str(job_id) in listed

    status = run(dsn, "status").stdout
    assert "emails.send" in status
    assert status.splitlines()[0].split()[:3] == ["queue", "pending", "due"]


def test_enqueue_options_reach_the_job(dsn, queue):
    job_id = int(
        run(
            dsn, "enqueue", "reports", "[1, 2]",
            "--delay", "60", "--priority", "5", "--max-attempts", "7",
        ).stdout
    )  # fmt: skip
    job = queue.get_job(job_id)
    assert (job.priority, job.max_attempts, job.payload) == (5, 7, [1, 2])
    assert job.run_at > job.created_at


def test_cancel_retry_dead_and_purge(dsn, db, queue):
    job_id = queue.enqueue("emails", {}, max_attempts=1)
    (claimed_id, token) = db.execute(
        "SELECT id, lease_token FROM pyqueue.claim_batch('{emails}', 'cli-test', 1)"
    ).fetchone()
    assert claimed_id == job_id
    outcome = db.execute("SELECT pyqueue.fail(%s, %s, 'smtp down')", [claimed_id, token]).fetchone()
    assert outcome == ("dead",)
    dead = run(dsn, "dead").stdout
    assert str(job_id) in dead and "smtp down" in dead
    [dead_row] = [line.split() for line in dead.splitlines() if line.startswith(str(job_id))]
    assert dead_row[-1] == "retry"

    new_id = int(run(dsn, "retry", str(job_id)).stdout)
    assert queue.get_job(new_id).status == "pending"

    assert f"job {new_id} cancelled" in run(dsn, "cancel", str(new_id)).stdout
    assert "already finished (cancelled)" in run(dsn, "cancel", str(new_id)).stdout
    assert "actions: none" in run(dsn, "job", str(new_id)).stdout
    # The cancelled replay and the dead letter it replaced are both past retention 0.
    assert "purged 2 job(s)" in run(dsn, "purge", "--older-than", "0").stdout
    assert "(none)" in run(dsn, "dead").stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        # Mistakes only the command line makes; the SQL API's bad input is in
        # tests/bad_input.py, run through the CLI by tests/test_bad_input.py.
        (["enqueue", "emails", "{not json"], 2, "payload is not JSON"),
        (["enqueue", "bad name", "{}"], 1, "invalid queue name 'bad name'"),  # in a real process
        (["job", "abc"], 2, "is not a valid integer"),
        (["worker", "no_such_module:worker"], 2, "cannot load no_such_module:worker"),
        (["worker", "json"], 2, "expected MODULE:OBJECT"),
        (["schedule", "add", "s", "* * * * *", "q", "{"], 2, "not JSON"),
        (["schedule", "remove", "nothing"], 1, "no schedule named 'nothing'"),
        (["maintain", "--max-rows", "0"], 2, "0 is not in the range"),
    ],
)
def test_bad_input_is_one_clear_line(dsn, args, code, message):
    assert_one_line_error(run(dsn, *args, check=False), code, message)


def test_retry_of_a_job_that_is_not_dead(dsn, queue):
    job_id = queue.enqueue("emails", {})
    result = run(dsn, "retry", str(job_id), check=False)
    assert_one_line_error(result, 1, f"job {job_id} is not dead-lettered (status pending)")


def test_unreachable_database_is_one_clear_line():
    result = run("postgresql://nobody@127.0.0.1:1/none", "status", check=False)
    assert_one_line_error(result, 1, "pyqueue: error:")


def test_private_server_start_url_stop():
    # Not under tmp_path: as root, the server's own user must be able to enter it.
    data_dir = Path(tempfile.mkdtemp(prefix="pyqueue-cli-")) / "server"
    data_dir.parent.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}

    def cli(*args: str) -> str:
        result = subprocess.run(
            [*PYQUEUE, "--data-dir", str(data_dir), *args],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    try:
        url = cli("server", "start")
        # The private server asks for a password; the URL carries it.
        assert re.match(r"postgresql://postgres:[\w-]{40,}@127\.0\.0\.1:\d+/pyqueue$", url)
        assert cli("server", "url") == url
        # The private server is migrated on first use and reused by later calls.
        job_id = cli("enqueue", "emails", "{}")
        assert "status: pending" in cli("job", job_id)
    finally:
        cli("server", "stop")
    result = subprocess.run(
        [*PYQUEUE, "--data-dir", str(data_dir), "server", "url"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert_one_line_error(result, 1, "is not running")
    shutil.rmtree(data_dir.parent, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_unreachable_data_dir_is_explained(tmp_path):
    # pytest's tmp_path is private to root, so the postgres user cannot enter it.
    result = subprocess.run(
        [*PYQUEUE, "--data-dir", str(tmp_path / "server"), "server", "start"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert_one_line_error(result, 1, "cannot reach")


def test_demo_runs_every_job_to_its_end(dsn, queue):
    result = run(dsn, "demo")
    assert "dead letters:" in result.stdout
    final = {(j.queue, j.status) for j in queue.list_jobs(limit=20)}
    # The import, the e-mail (after two busy attempts) and the export complete;
    # the webhook ends dead-lettered; the export enqueued twice ran once.
    assert final == {
        ("demo.csv_import", "completed"),
        ("demo.email", "completed"),
        ("demo.export", "completed"),
        ("demo.webhook", "dead"),
    }
    assert len(queue.list_jobs(queue="demo.export")) == 1
    assert queue.list_jobs(queue="demo.email")[0].attempt == 3


def test_schedule_add_list_remove(dsn, queue):
    added = run(dsn, "schedule", "add", "nightly", "30 2 * * *", "reports", '{"kind": "full"}',
                "--tz", "Europe/Berlin", "--priority", "2")  # fmt: skip
    assert added.stdout.startswith("schedule nightly: next run ")
    (found,) = queue.schedules()
    assert (found.cron, found.tz, found.queue, found.payload, found.priority) == (
        "30 2 * * *", "Europe/Berlin", "reports", {"kind": "full"}, 2
    )  # fmt: skip
    listed = run(dsn, "schedule", "list").stdout.splitlines()
    assert listed[0].split() == ["name", "cron", "tz", "queue", "next_run_at", "last_run_at",
                                 "last_job_id"]  # fmt: skip
    assert listed[2].split()[:6] == ["nightly", "30", "2", "*", "*", "*"]
    assert run(dsn, "schedule", "remove", "nightly").stdout == "schedule nightly removed\n"
    assert queue.schedules() == []


def test_maintain_runs_passes_until_nothing_is_left(dsn, db, queue):
    ids = queue.enqueue_many("old", [{}, {}, {}])
    for job_id in ids:
        queue.cancel(job_id)
    db.execute("UPDATE pyqueue.jobs SET finished_at = now() - interval '30 days'")
    done = run(dsn, "maintain", "--max-rows", "2")
    assert done.stdout == "recovered 0, fired 0, purged 3, dead purged 0\n"
    assert db.execute("SELECT count(*) FROM pyqueue.jobs").fetchone() == (0,)


def test_control_characters_from_a_job_are_shown_not_obeyed(dsn, db):
    from tests.helpers import claim_one, enqueue, fail

    job_id = enqueue(db, "mail", '{"n": 1}', max_attempts=1)
    claimed = claim_one(db, "mail")
    # An error that would clear the screen and read right to left from "gpj".
    fail(db, job_id, claimed.lease_token, "bad file \x1b[2Jinvoice-\u202egpj.exe")
    shown = run(dsn, "job", str(job_id)).stdout
    assert "error: bad file <U+001B>[2Jinvoice-<U+202E>gpj.exe" in shown
    listed = run(dsn, "dead").stdout
    assert "<U+001B>[2Jinvoice-<U+202E>gpj.exe" in listed
    for output in (shown, listed):
        assert "\x1b" not in output and "\u202e" not in output
