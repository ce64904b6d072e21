"""The worker runner: claims jobs of the queues it has handlers for, runs them, reports.

    worker = Worker(concurrency=4)

    @worker.handler("report.export")
    def export(payload, job):
        job.progress(50, "half way")
        return {"rows": 1200}

    worker.run("postgresql://...")   # until SIGTERM / SIGINT / worker.stop()

How it is built, and why:

- One asyncio event loop (session.py) with psycopg's AsyncConnection: one
  connection for claims, heartbeats and progress, one for storing outcomes (so
  that storing a burst overlaps the next claim), one for LISTEN. `async def`
  handlers run on the loop; plain handlers on `concurrency` daemon threads
  (threads.py), which post their outcomes back to the loop in bursts, not one
  wake-up per job. The claimer claims only for free handler slots (at most
  batch_size per claim), so no job waits leased on a busy worker while another
  worker idles; while handlers run it waits until half a batch of slots is
  free (or 50 ms after one freed up), so a busy worker claims in batches, not
  job by job. A stop therefore rarely has unstarted jobs to release. When a
  full batch comes back and slots are free beyond it, the next claim is sent
  before that batch starts, so the database leases it while the loop starts
  the last one (one claim in flight, never two: two would skip each other's
  locked rows).
- A claim that finds the queues empty makes the claimer wait for a NOTIFY on
  pyqueue_jobs (sent at enqueue commit) or poll_interval, whichever comes first.
- Results of all handlers that finished meanwhile are stored by one
  complete_batch call; failures by one fail() each, with the traceback.
- Leases are extended by heartbeat every heartbeat_interval; expired ones are
  recovered by claim_batch and by a recover_expired() call every lease/2.
- Every call goes through connection.Reconnecting: a lost connection is
  re-opened with backoff (0.1 s doubling to 5 s) and the call repeated, which
  is safe because SQL fences every call with the job's lease token.
- Job state decisions are all in SQL; this package only decides when to call.
"""

from pyqueue.worker.context import JobContext
from pyqueue.worker.runner import Worker

__all__ = ["JobContext", "Worker"]
