"""The examples run as documented."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_psql_lifecycle_script(dsn, db):
    params = conninfo_to_dict(dsn)
    url = f"postgresql://{params['user']}@{params['host']}:{params['port']}/{params['dbname']}"
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
