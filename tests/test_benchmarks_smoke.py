"""The benchmark command still runs: `python -m benchmarks --quick`, small sizes.

A smoke test only: it checks that every scenario ran, printed its rows beside a
baseline with a ratio, and wrote valid JSON. It does not check that the
performance targets are met: timing on shared CI machines proves nothing.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SCENARIOS = ("1. enqueue", "2. drain", "2b. ", "3. latency", "4. ", "5. soak")


@pytest.mark.slow
def test_quick_benchmark_prints_the_table_and_writes_json(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--soak-seconds", "5",
         "--json", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    out = done.stdout
    for heading in ("Settings:", "synchronous_commit", "batch size", "worker processes"):
        assert heading in out
    assert "scenario" in out and "raw SQL" in out and "ratio" in out

    report = json.loads(results.read_text())
    assert report["errors"] == {}
    rows = report["results"]
    for prefix in SCENARIOS:
        matching = [r for r in rows if r["scenario"].startswith(prefix)]
        assert matching, f"no result for {prefix!r}"
        for row in matching:
            assert row["scenario"] in out  # printed in the table too
            for figure in ("pyqueue", "baseline", "ratio"):
                value = row[figure]
                assert isinstance(value, float) and math.isfinite(value) and value > 0, row
    # Each target is judged (yes or no), whichever way it went.
    judged = [r for r in rows if r["target"] is not None]
    assert len(judged) >= 8 and all(isinstance(r["met"], bool) for r in judged)
    assert report["settings"]["synchronous_commit"] in ("on", "off", "local", "remote_write",
                                                       "remote_apply")  # fmt: skip
