"""The examples run as documented."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from psycopg.conninfo import conninfo_to_dict

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_psql_lifecycle_script(dsn, db):
    params = conninfo_to_dict(dsn)
    login = params["user"] + (f":{quote(params['password'])}" if params.get("password") else "")
    url = f"postgresql://{login}@{params['host']}:{params['port']}/{params['dbname']}"
    result = subprocess.run(
        ["bash", str(EXAMPLES / "lifecycle.sh")],
        capture_output=True, text=True, env={**os.environ, "DATABASE_URL": url}, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    first = lines[0].split()
    assert first[:2] == ["enqueued", "job"] and first[2] == first[4].rstrip(")")
    assert any(line.endswith('completed {"pdf": "invoice-1001.pdf"}') for line in lines)
    assert any(line.endswith("failed: dead") for line in lines)

    statuses = dict(db.execute("SELECT status, count(*) FROM pyqueue.all_jobs GROUP BY 1"))
    # One completed invoice, one dead-lettered failure, its replay cancelled.
    assert statuses == {"completed": 1, "dead": 1, "cancelled": 1}


def test_example_worker_module(dsn, queue):
    worker = subprocess.Popen(
        [sys.executable, "-m", "pyqueue.cli", "--database-url", dsn,
         "worker", "examples.worker_app:worker"],
        cwd=EXAMPLES.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        email = queue.enqueue("emails.send", {"to": "ada@example.com"})
        bad_email = queue.enqueue("emails.send", {"to": "nobody"}, max_attempts=1)
        report = queue.enqueue("reports.export", {"report": "monthly-sales", "rows": 4})
        assert queue.wait(email, timeout=30).result == {"sent_to": "ada@example.com", "attempt": 1}
        failed = queue.wait(bad_email, timeout=30)
        assert failed.status == "dead" and "not an e-mail address" in (failed.error or "")
        done = queue.wait(report, timeout=30)
        assert (done.status, done.progress) == ("completed", 100)
        assert done.result == {"file": "monthly-sales.csv", "rows": 4}
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, output
