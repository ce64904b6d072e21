"""The worker's job lines carry stable fields, emitted as JSON with the README's setup."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from pyqueue import Worker
from tests.helpers import running

README = Path(__file__).resolve().parent.parent / "README.md"
FIELDS = {"job_id", "queue", "attempt", "max_attempts", "duration", "outcome"}


def readme_json_logs_setup() -> str:
    """The Python block of the README's "JSON logs" section."""
    section = README.read_text().split("### JSON logs", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's JSON logs section has no python block"
    return found.group(1)


def test_job_outcomes_are_json_lines_with_stable_fields(dsn, queue, capsys):
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    worker = Worker(poll_interval=0.05, maintenance_interval=None)

    @worker.handler("mail")
    def mail(payload, job):
        if payload == "bad":
            raise ValueError("no such mailbox")
        return "sent"

    try:
        setup = readme_json_logs_setup()
        # The two lines that do it (imports aside).
        assert len([line for line in setup.splitlines() if line and "import" not in line]) == 2
        exec(setup, {})
        good = queue.enqueue("mail", "ok")
        retried = queue.enqueue("mail", "bad", max_attempts=2)
        doomed = queue.enqueue("mail", "bad", max_attempts=1)
        with running(worker, dsn):
            for job_id in (good, doomed):
                queue.wait(job_id, timeout=30)
            queue.wait(retried, timeout=30)
    finally:
        for handler in root.handlers:
            if handler not in saved[1]:
                handler.close()
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    jobs = [line for line in lines if "outcome" in line]
    by_outcome = {(line["job_id"], line["attempt"]): line for line in jobs}
    assert {k: v["outcome"] for k, v in by_outcome.items()} == {
        (good, 1): "completed",
        (retried, 1): "retry",
        (retried, 2): "dead",
        (doomed, 1): "dead",
    }
    for line in jobs:
        assert set(line) >= FIELDS, line
        assert line["queue"] == "mail" and line["name"] == "pyqueue.worker"
        assert isinstance(line["duration"], float) and 0 <= line["duration"] < 10
    assert by_outcome[(good, 1)]["levelname"] == "INFO"
    assert by_outcome[(doomed, 1)]["levelname"] == "WARNING"
    assert "no such mailbox" in by_outcome[(doomed, 1)]["message"]
