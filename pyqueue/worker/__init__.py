"""The worker runner: claims jobs of the queues it has handlers for, runs them, reports.

    worker = Worker(concurrency=4)

    @worker.handler("report.export")
    def export(payload, job):
        job.progress(50, "half way")
        return {"rows": 1200}

    worker.run("postgresql://...")   # until SIGTERM / SIGINT / worker.stop()

How it is built (session.py draws it): one asyncio event loop per run, and
on it a few parts with one job each, meeting only in a small shared State
(state.py) and in one queue of outcomes:

- claimer.py: leases due jobs for free handler slots and up to `prefetch`
  more, in batches;
- executor.py: runs each job's handler, or keeps the job waiting for a slot
  (`async def` handlers on slot tasks of the loop, slots.py; plain ones on
  daemon threads, plain.py), and queues its outcome;
- completer.py: stores the outcomes queued meanwhile as one burst;
- leases.py: extends the leases of the jobs held, recovers expired ones;
- listener.py: LISTENs for enqueues and wakes the claimer;
- transaction.py: `job.transaction()`, a handler's writes committed with
  its job's completion, fenced by the lease token;
- runner.py: `Worker`, its settings (settings.py), signals and the schema check.

Beside them: decoding.py wraps a typed handler at registration so that it gets
its payload as the annotated type; joblog.py logs each stored outcome with
structured fields (and counts it in metrics.py, the process's Prometheus
figures, when the worker serves them on a port).

What must stay true:

- Every state change is a call of a SQL function (queries.py); Python only
  decides when to call. A call lost with its connection is repeated on a new
  one (connection.py), which is safe because SQL fences every call with the
  job's lease token.
- A worker holds at most `concurrency + prefetch` jobs running or waiting to
  run, and at most twice that counting outcomes not yet stored (state.py). So
  a busy worker leaves all but `prefetch` jobs to idle ones, and a kill -9
  re-runs at most 2 x (concurrency + prefetch) jobs.
- At most one claim is in flight: two would skip each other's locked rows.
- A job's last progress report is stored before its outcome.
"""

from pyqueue.worker.context import JobContext
from pyqueue.worker.runner import Worker

__all__ = ["JobContext", "Worker"]
