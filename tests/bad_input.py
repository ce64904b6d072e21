"""Bad input, stated once in SQL terms, with the same mistake made through each interface.

Each case is a call of the SQL API that must be refused with a SQLSTATE and a
message naming the problem. Where the Python client or the CLI can make the same
mistake, the case says how; tests/test_bad_input.py runs every case through every
interface it names and checks that each refuses it in the same words and writes
nothing. Mistakes only one interface can make (a Python value that is not JSON, a
CLI argument that is not a number) are tested beside that interface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pyqueue import Queue
from pyqueue.errors import InvalidArgument, JobNotFound, PyqueueError

UNKNOWN_JOB = 10**9


@dataclass(frozen=True)
class BadInput:
    what: str
    sql: str  # a statement as psql sends it; %s takes `params`
    message: str  # words that SQL's message, and every interface's, must hold
    params: tuple[Any, ...] = ()
    sqlstate: str = "22023"
    python: Callable[[Queue], object] | None = None  # the same mistake through Queue
    error: type[PyqueueError] = InvalidArgument  # what Queue raises for it
    cli: tuple[str, ...] | None = None  # the same mistake on the command line (exit 1)


def bad_queue_name(what: str, name: str, *, cli: bool = True) -> BadInput:
    return BadInput(
        what,
        "SELECT pyqueue.enqueue(%s, '{}')",
        "invalid queue name",
        params=(name,),
        python=lambda q: q.enqueue(name, {}),
        cli=("enqueue", name, "{}") if cli else None,
    )


CASES = [
    bad_queue_name("empty queue", ""),
    bad_queue_name("long queue", "q" * 101),
    bad_queue_name("quote", "it's"),
    bad_queue_name("semicolon", "a;drop"),
    bad_queue_name("space", "two words"),
    bad_queue_name("unicode", "émails"),
    bad_queue_name("newline", "a\nb"),
    bad_queue_name("dash first", "-x", cli=False),  # the CLI reads -x as an option
    BadInput("NULL queue", "SELECT pyqueue.enqueue(NULL, '{}')", "invalid queue name NULL"),
    BadInput("NULL payload", "SELECT pyqueue.enqueue('q', NULL)", "payload must not be NULL"),
    BadInput(
        "negative delay",
        "SELECT pyqueue.enqueue('q', '{}', delay => '-1 second')",
        "delay must be zero or positive",
        python=lambda q: q.enqueue("q", {}, delay=timedelta(seconds=-1)),
        cli=("enqueue", "q", "{}", "--delay", "-1"),
    ),
    BadInput(
        "huge delay",
        "SELECT pyqueue.enqueue('q', '{}', delay => '11 years')",
        "delay must be at most 10 years",
        python=lambda q: q.enqueue("q", {}, delay=timedelta(days=11 * 366)),
        cli=("enqueue", "q", "{}", "--delay", str(11 * 366 * 86400)),
    ),
    BadInput(
        "run_at and delay",
        "SELECT pyqueue.enqueue('q', '{}', run_at => now(), delay => '1 s')",
        "give run_at or delay, not both",
        python=lambda q: q.enqueue("q", {}, run_at=datetime.now(UTC), delay=timedelta(1)),
    ),
    BadInput(
        "infinite run_at",
        "SELECT pyqueue.enqueue('q', '{}', run_at => 'infinity')",
        "run_at must be a finite time",
    ),
    BadInput(
        "max_attempts 0",
        "SELECT pyqueue.enqueue('q', '{}', max_attempts => 0)",
        "max_attempts must be between 1 and 1000",
        python=lambda q: q.enqueue("q", {}, max_attempts=0),
        cli=("enqueue", "q", "{}", "--max-attempts", "0"),
    ),
    BadInput(
        "max_attempts 1001",
        "SELECT pyqueue.enqueue('q', '{}', max_attempts => 1001)",
        "max_attempts must be between 1 and 1000",
        python=lambda q: q.enqueue("q", {}, max_attempts=1001),
        cli=("enqueue", "q", "{}", "--max-attempts", "1001"),
    ),
    BadInput(
        "priority high",
        "SELECT pyqueue.enqueue('q', '{}', priority => 32768)",
        "priority must be between -32768 and 32767",
        python=lambda q: q.enqueue("q", {}, priority=32768),
        cli=("enqueue", "q", "{}", "--priority", "32768"),
    ),
    BadInput(
        "priority low",
        "SELECT pyqueue.enqueue('q', '{}', priority => -32769)",
        "priority must be between -32768 and 32767",
        python=lambda q: q.enqueue("q", {}, priority=-32769),
    ),
    BadInput(
        "priority NULL",
        "SELECT pyqueue.enqueue('q', '{}', priority => NULL)",
        "priority must not be NULL",
        python=lambda q: q.enqueue("q", {}, priority=None),  # type: ignore[arg-type]
    ),
    BadInput(
        "zero backoff",
        "SELECT pyqueue.enqueue('q', '{}', backoff_base => '0')",
        "backoff_base must be positive",
    ),
    BadInput(
        "negative cap",
        "SELECT pyqueue.enqueue('q', '{}', backoff_max => '-1 s')",
        "backoff_max must be positive",
    ),
    BadInput(
        "empty key",
        "SELECT pyqueue.enqueue('q', '{}', idempotency_key => '')",
        "idempotency_key must not be empty",
        python=lambda q: q.enqueue("q", {}, idempotency_key=""),
        cli=("enqueue", "q", "{}", "--idempotency-key", ""),
    ),
    BadInput(
        "long key",
        "SELECT pyqueue.enqueue('q', '{}', idempotency_key => %s)",
        "idempotency_key is 1002 bytes, over the limit of 1000",
        params=("é" * 501,),
        python=lambda q: q.enqueue("q", {}, idempotency_key="é" * 501),
        cli=("enqueue", "q", "{}", "--idempotency-key", "é" * 501),
    ),
    BadInput(
        "batch NULL",
        "SELECT pyqueue.enqueue_batch('q', NULL)",
        "payloads must not be NULL",
    ),
    BadInput(
        "batch NULL element",
        "SELECT pyqueue.enqueue_batch('q', ARRAY['{}', NULL]::jsonb[])",
        "payloads[2] must not be NULL",
    ),
    BadInput(
        "batch 2-D",
        "SELECT pyqueue.enqueue_batch('q', ARRAY[['{}'], ['{}']]::jsonb[])",
        "one-dimensional",
    ),
    BadInput(
        "batch keys length",
        "SELECT pyqueue.enqueue_batch('q', ARRAY['1', '2']::jsonb[],"
        " idempotency_keys => ARRAY['a'])",
        "idempotency_keys has 1 elements, payloads has 2",
        python=lambda q: q.enqueue_many("q", [1, 2], idempotency_keys=["a"]),
    ),
    BadInput(
        "batch empty key",
        "SELECT pyqueue.enqueue_batch('q', ARRAY['1', '2']::jsonb[],"
        " idempotency_keys => ARRAY['a', ''])",
        "idempotency_keys[2] must not be empty",
        python=lambda q: q.enqueue_many("q", [1, 2], idempotency_keys=["a", ""]),
    ),
    BadInput(
        "batch long key",
        "SELECT pyqueue.enqueue_batch('q', ARRAY['1']::jsonb[], idempotency_keys => ARRAY[%s])",
        "idempotency_keys[1] is 1001 bytes, over the limit of 1000",
        params=("k" * 1001,),
        python=lambda q: q.enqueue_many("q", [1], idempotency_keys=["k" * 1001]),
    ),
    BadInput(
        "batch bad queue",
        "SELECT pyqueue.enqueue_batch('a b', ARRAY['{}']::jsonb[])",
        "invalid queue name",
        python=lambda q: q.enqueue_many("a b", [{}]),
    ),
    BadInput(
        "batch negative delay",
        "SELECT pyqueue.enqueue_batch('q', ARRAY['{}']::jsonb[], delay => '-1 day')",
        "delay must be zero or positive",
        python=lambda q: q.enqueue_many("q", [{}], delay=timedelta(days=-1)),
    ),
    BadInput(
        "claim no queues",
        "SELECT * FROM pyqueue.claim_batch('{}', 'w')",
        "queues must name at least one queue",
    ),
    BadInput(
        "claim no worker",
        "SELECT * FROM pyqueue.claim_batch(ARRAY['q'], '')",
        "worker must name the worker",
    ),
    BadInput(
        "claim batch 0",
        "SELECT * FROM pyqueue.claim_batch(ARRAY['q'], 'w', 0)",
        "batch_size must be between 1 and 10000",
    ),
    BadInput(
        "claim lease 0",
        "SELECT * FROM pyqueue.claim_batch(ARRAY['q'], 'w', 1, '0')",
        "lease must be positive",
    ),
    BadInput(
        "claim lease NULL",
        "SELECT * FROM pyqueue.claim_batch(ARRAY['q'], 'w', 1, NULL)",
        "lease must not be NULL",
    ),
    BadInput(
        "claim ahead beyond the batch",
        "SELECT * FROM pyqueue.claim_batch(ARRAY['q'], 'w', 5, ahead => 6)",
        "ahead must be between 0 and 5",
    ),
    BadInput(
        "claim ahead negative",
        "SELECT * FROM pyqueue.claim_batch(ARRAY['q'], 'w', 5, ahead => -1)",
        "ahead must be between 0 and 5",
    ),
    BadInput(
        "claim ahead NULL",
        "SELECT * FROM pyqueue.claim_batch(ARRAY['q'], 'w', 5, ahead => NULL)",
        "ahead must not be NULL",
    ),
    BadInput(
        "heartbeat pairs",
        "SELECT * FROM pyqueue.heartbeat(ARRAY[1, 2], ARRAY[gen_random_uuid()])",
        "job_ids has 2 elements, lease_tokens has 1",
    ),
    BadInput(
        "heartbeat lease",
        "SELECT * FROM pyqueue.heartbeat(ARRAY[1], ARRAY[gen_random_uuid()], '-1 s')",
        "lease must be positive",
    ),
    BadInput(
        "release NULL",
        "SELECT * FROM pyqueue.release(NULL, NULL)",
        "job_ids and lease_tokens must not be NULL",
    ),
    BadInput(
        "complete_batch results",
        "SELECT * FROM pyqueue.complete_batch(ARRAY[1],"
        " ARRAY[gen_random_uuid()], ARRAY['{}', '{}']::jsonb[])",
        "results has 2 elements, job_ids has 1",
    ),
    BadInput(
        "recover max_jobs",
        "SELECT pyqueue.recover_expired(0)",
        "max_jobs must be between 1 and 100000",
    ),
    BadInput(
        "list status",
        "SELECT * FROM pyqueue.list_jobs('done')",
        "unknown status 'done'",
        python=lambda q: q.list_jobs(status="done"),
        cli=("jobs", "--status", "done"),
    ),
    BadInput(
        "list queue",
        "SELECT * FROM pyqueue.list_jobs(queue => 'x;y')",
        "invalid queue name",
        python=lambda q: q.list_jobs(queue="x;y"),
        cli=("jobs", "--queue", "x;y"),
    ),
    BadInput(
        "list limit",
        "SELECT * FROM pyqueue.list_jobs(max_rows => 0)",
        "max_rows must be between 1 and 100000",
        python=lambda q: q.list_jobs(limit=0),
    ),
    BadInput(
        "purge negative",
        "SELECT pyqueue.purge(older_than => '-1 day')",
        "older_than must be zero or positive",
        python=lambda q: q.purge(older_than=timedelta(days=-1)),
        cli=("purge", "--older-than", "-86400"),
    ),
    BadInput(
        "purge queue",
        "SELECT pyqueue.purge(queue => '')",
        "invalid queue name",
        python=lambda q: q.purge(queue=""),
        cli=("purge", "--queue", ""),
    ),
    BadInput(
        "configure name",
        "SELECT pyqueue.configure_queue('bad name', max_attempts => 2)",
        "invalid queue name",
        python=lambda q: q.configure_queue("bad name", max_attempts=2),
    ),
    BadInput(
        "configure attempts",
        "SELECT pyqueue.configure_queue('q', max_attempts => 0)",
        "max_attempts must be between 1 and 1000",
        python=lambda q: q.configure_queue("q", max_attempts=0),
    ),
    BadInput(
        "configure backoff",
        "SELECT pyqueue.configure_queue('q', backoff_base => '0')",
        "backoff_base must be positive",
        python=lambda q: q.configure_queue("q", backoff_base=timedelta(0)),
    ),
    BadInput(
        "configure retention",
        "SELECT pyqueue.configure_queue('q', retention => '-1 day')",
        "retention must be zero or positive",
        python=lambda q: q.configure_queue("q", retention=timedelta(days=-1)),
    ),
    BadInput(
        "configure payload",
        "SELECT pyqueue.configure_queue('q', max_payload_bytes => 0)",
        "max_payload_bytes must be between 1 and 268435456",
        python=lambda q: q.configure_queue("q", max_payload_bytes=0),
    ),
    BadInput(
        "get unknown",
        "SELECT * FROM pyqueue.get_job(%s)",
        f"no job with id {UNKNOWN_JOB}",
        params=(UNKNOWN_JOB,),
        sqlstate="P0002",
        python=lambda q: q.get_job(UNKNOWN_JOB),
        error=JobNotFound,
        cli=("job", str(UNKNOWN_JOB)),
    ),
    BadInput(
        "cancel unknown",
        "SELECT pyqueue.cancel(%s)",
        f"no job with id {UNKNOWN_JOB}",
        params=(UNKNOWN_JOB,),
        sqlstate="P0002",
        python=lambda q: q.cancel(UNKNOWN_JOB),
        error=JobNotFound,
        cli=("cancel", str(UNKNOWN_JOB)),
    ),
    BadInput(
        "retry unknown",
        "SELECT pyqueue.retry_dead(%s)",
        f"no job with id {UNKNOWN_JOB}",
        params=(UNKNOWN_JOB,),
        sqlstate="P0002",
        python=lambda q: q.retry_dead(UNKNOWN_JOB),
        error=JobNotFound,
        cli=("retry", str(UNKNOWN_JOB)),
    ),
    BadInput(
        "bad cron",
        "SELECT pyqueue.schedule('s', '61 * * * *', 'q')",
        "invalid cron expression '61 * * * *'",
        python=lambda q: q.schedule("s", "61 * * * *", "q"),
        cli=("schedule", "add", "s", "61 * * * *", "q"),
    ),
    BadInput(
        "unknown time zone",
        "SELECT pyqueue.schedule('s', '@daily', 'q', tz => 'Mars/Base')",
        "unknown time zone",
        python=lambda q: q.schedule("s", "@daily", "q", tz="Mars/Base"),
        cli=("schedule", "add", "s", "@daily", "q", "--tz", "Mars/Base"),
    ),
]
