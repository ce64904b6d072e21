"""An example worker module for `pyqueue worker`.

    pyqueue worker examples.worker_app:worker --concurrency 4
    pyqueue enqueue emails.send '{"to": "ada@example.com", "subject": "Welcome"}'
    pyqueue enqueue reports.export '{"report": "monthly-sales", "rows": 3}'

Handlers receive the job's JSON payload and a small context (id, attempt,
progress); plain and async functions both work. What they return is stored as
the job's result, and an exception fails the job (it is retried with backoff,
then dead-lettered).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pyqueue import JobContext, Worker

worker = Worker(concurrency=4, batch_size=10)


@worker.handler("emails.send")
async def send_email(payload: dict[str, Any], job: JobContext) -> dict[str, Any]:
    if "@" not in payload.get("to", ""):
        # A bad address will not get better: fail now, with a clear message.
        raise ValueError(f"not an e-mail address: {payload.get('to')!r}")
    # A real handler would talk to the mail server here. Make it idempotent:
    # a job can run twice if its worker dies after sending but before completing.
    await asyncio.sleep(0.01)
    return {"sent_to": payload["to"], "attempt": job.attempt}


@worker.handler("reports.export")
def export_report(payload: dict[str, Any], job: JobContext) -> dict[str, Any]:
    rows = int(payload.get("rows", 10))
    for row in range(rows):
        job.progress(100 * (row + 1) // rows, f"row {row + 1} of {rows}")
        time.sleep(0.01)
    return {"file": f"{payload['report']}.csv", "rows": rows}
