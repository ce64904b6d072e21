"""Hostile input, through SQL and through the Python client.

Queue names, payloads, numbers, durations, idempotency keys and job ids that a
careless or malicious caller could send. Each must get a clear error naming
the problem, write nothing (the whole state of the three tables is compared
before and after), and leave the queue working for everyone else: after each
one a normal job is enqueued, claimed and completed.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from psycopg import errors, sql
from psycopg.types.json import Jsonb

import pyqueue
from pyqueue.cli import main as cli_main
from pyqueue.values import to_json
from tests.helpers import scalar

# The database is shared by the examples of one test: a fresh one per example
# would cost a second each. Every example leaves it in working order anyway.
hostile = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# The rule of sql/01_checks.sql, written again here as the specification.
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
NASTY_NAMES = [
    "",
    " ",
    "emails ",
    "a'b",
    "x'); DELETE FROM pyqueue.jobs; --",
    'say "hi"',
    "a;b",
    "$$",
    "\\",
    "e\u0301mails",
    "日本語",
    "🙂",
    "tab\there",
    "line\nbreak",
    "-leading-dash",
    "a" * 100,
    "a" * 101,
    "a" * 100_000,
]
# Text PostgreSQL can carry: not NUL, which a text value cannot hold, nor lone
# surrogates, which are not Unicode (both have tests of their own).
texts = st.text(
    alphabet=st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=150
)


def fingerprint(db: psycopg.Connection[Any]) -> tuple[Any, ...]:
    """Every row of the three tables, hashed: equal before and after means nothing written."""
    row = db.execute(
        """
        SELECT (SELECT md5(coalesce(string_agg(j::text, ',' ORDER BY id), '')) FROM pyqueue.jobs j),
               (SELECT md5(coalesce(string_agg(d::text, ',' ORDER BY id), ''))
                FROM pyqueue.dead_jobs d),
               (SELECT md5(coalesce(string_agg(q::text, ',' ORDER BY name), ''))
                FROM pyqueue.queues q)
        """
    ).fetchone()
    assert row is not None
    return tuple(row)


def assert_queue_works(db: psycopg.Connection[Any]) -> None:
    """A normal job still goes through enqueue, claim and complete."""
    job_id = db.execute("SELECT pyqueue.enqueue('healthy', '{\"ok\": true}')").fetchone()[0]
    claimed = db.execute(
        "SELECT id, lease_token FROM pyqueue.claim_batch(ARRAY['healthy'], 'check', 1)"
    ).fetchall()
    assert [c[0] for c in claimed] == [job_id]
    assert db.execute("SELECT pyqueue.complete(%s, %s)", claimed[0]).fetchone() == (True,)


class Refused:
    """Expect an error whose message matches, with nothing written, then a working queue."""

    def __init__(
        self,
        db: psycopg.Connection[Any],
        kind: type[BaseException] | tuple[type[BaseException], ...],
        match: str,
        label: str = "",
    ) -> None:
        self.db, self.kind, self.match, self.label = db, kind, match, label
        self.error: BaseException | None = None

    def __enter__(self) -> Refused:
        self.before = fingerprint(self.db)
        return self

    def __exit__(self, kind: Any, error: BaseException | None, tb: Any) -> bool:
        where = f"{self.label}: " if self.label else ""
        assert error is not None, f"{where}no error raised (expected {self.match!r})"
        assert isinstance(error, self.kind), f"{where}{type(error).__name__}: {error}"
        assert re.search(self.match, str(error)), f"{where}{error!s} does not match {self.match!r}"
        self.error = error
        assert fingerprint(self.db) == self.before, f"{where}a refused call wrote something"
        assert_queue_works(self.db)
        return True


# ---- queue names ---------------------------------------------------------------


def expect_queue_name(db: psycopg.Connection[Any], name: str, call: Any, refused: Any) -> None:
    if QUEUE_NAME.fullmatch(name):
        job_id = call()
        assert db.execute("SELECT queue FROM pyqueue.jobs WHERE id = %s", [job_id]).fetchone() == (
            name,
        )
    else:
        with refused:
            call()


@hostile
@given(name=st.one_of(st.sampled_from(NASTY_NAMES), texts))
def test_queue_names_through_sql(db, name):
    # Embedded as a literal in the statement text, as a psql user would type it.
    statement = sql.SQL("SELECT pyqueue.enqueue({}, '{{}}')").format(sql.Literal(name))
    expect_queue_name(
        db,
        name,
        lambda: db.execute(statement).fetchone()[0],
        Refused(db, errors.InvalidParameterValue, r"invalid queue name"),
    )


@hostile
@given(name=st.one_of(st.sampled_from(NASTY_NAMES), texts))
def test_queue_names_through_python(db, queue, name):
    expect_queue_name(
        db,
        name,
        lambda: queue.enqueue(name, {}),
        Refused(db, pyqueue.InvalidArgument, r"invalid queue name"),
    )
    if not QUEUE_NAME.fullmatch(name):
        with Refused(db, pyqueue.InvalidArgument, r"invalid queue name"):
            queue.list_jobs(queue=name)
        with Refused(db, pyqueue.InvalidArgument, r"invalid queue name"):
            queue.enqueue_many(name, [{}, {}])


def test_queue_name_with_a_nul_character(db, queue):
    # psycopg refuses to send NUL in text before PostgreSQL sees it.
    with Refused(db, (pyqueue.PyqueueError, psycopg.DataError), r"NUL"):
        queue.enqueue("a\x00b", {})
    with Refused(db, errors.ProgramLimitExceeded, r"null character not permitted"):
        db.execute("SELECT pyqueue.enqueue('a' || chr(0), '{}')")


def test_queue_name_and_key_with_a_lone_surrogate(db, queue):
    # Not Unicode: psycopg cannot even encode it, so the client names it, as
    # the database names the text it receives.
    name = re.escape(repr("a\ud800"))
    with Refused(db, pyqueue.InvalidArgument, f"invalid queue name {name}: .*lone surrogate"):
        queue.enqueue("a\ud800", {})
    with Refused(db, pyqueue.InvalidArgument, f"invalid queue name {name}: .*lone surrogate"):
        queue.enqueue_many("a\ud800", [{}, {}])
    key = re.escape(repr("k\udfff"))
    with Refused(db, pyqueue.InvalidArgument, f"{key} is not Unicode text"):
        queue.enqueue("keys", {}, idempotency_key="k\udfff")
    with Refused(db, pyqueue.InvalidArgument, f"{key} is not Unicode text"):
        queue.enqueue_many("keys", [{}], idempotency_keys=["k\udfff"])


def test_an_over_long_name_is_quoted_and_cut_in_the_message(db):
    with Refused(db, errors.InvalidParameterValue, r"invalid queue name") as refused:
        db.execute("SELECT pyqueue.enqueue(repeat('x''', 50000), '{}')")
    assert len(str(refused.error)) < 2000


# ---- payloads -----------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(min_value=-1e15, max_value=1e15, allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(holds_nul(v) for v in value)
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    return False


@hostile
@given(payload=json_values)
def test_payloads_round_trip_or_are_refused_for_nul(db, queue, payload):
    if holds_nul(payload):
        with Refused(db, pyqueue.InvalidPayload, r"payload contains \\u0000.*jsonb cannot store"):
            queue.enqueue("payloads", payload)
    else:
        job_id = queue.enqueue("payloads", payload)
        assert queue.get_job(job_id).payload == payload


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_only_a_real_nul_counts_as_one(text):
    # A literal backslash followed by "u0000" is ordinary text.
    if "\x00" in text:
        with pytest.raises(pyqueue.InvalidPayload, match="NUL"):
            to_json({"k": text})
        with pytest.raises(pyqueue.InvalidPayload, match="NUL"):
            to_json({text: 1})
    else:
        to_json({"k": text, text: "\\u0000"})


def lone_surrogate(text: str) -> bool:
    """A surrogate code point that is not half of a high-then-low pair."""
    i = 0
    while i < len(text):
        code = ord(text[i])
        if 0xD800 <= code <= 0xDBFF and i + 1 < len(text) and 0xDC00 <= ord(text[i + 1]) <= 0xDFFF:
            i += 2
            continue
        if 0xD800 <= code <= 0xDFFF:
            return True
        i += 1
    return False


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(
        alphabet=st.characters(min_codepoint=0xD7FF, max_codepoint=0xE000) | st.sampled_from("a😀")
    )
)
def test_payloads_with_lone_surrogates_are_named(text):
    if lone_surrogate(text):
        with pytest.raises(pyqueue.InvalidPayload, match="lone surrogate"):
            to_json({"k": text})
    else:
        to_json({"k": text})


def test_a_lone_surrogate_payload_is_refused_and_a_pair_is_one_character(db, queue):
    with Refused(db, pyqueue.InvalidPayload, r"payload contains a lone surrogate"):
        queue.enqueue("payloads", {"name": "caf\udce9"})
    with Refused(db, pyqueue.InvalidPayload, r"payloads\[2\] contains a lone surrogate"):
        queue.enqueue_many("payloads", ["ok", "\ud83d"])
    # A high-low pair, as UTF-16 sources hand it over, is the character it encodes.
    job_id = queue.enqueue("payloads", {"smile": "\ud83d\ude00"})
    assert queue.get_job(job_id).payload == {"smile": "\U0001f600"}


def test_nul_through_sql_is_refused_by_jsonb(db):
    with Refused(db, errors.UntranslatableCharacter, r"Unicode escape") as refused:
        db.execute("SELECT pyqueue.enqueue('payloads', '{\"x\": \"a\\u0000b\"}')")
    assert "\\u0000" in (refused.error.diag.message_detail or "")


def test_batch_with_one_nul_payload_names_it(db, queue):
    with Refused(db, pyqueue.InvalidPayload, r"payloads\[3\] contains \\u0000"):
        queue.enqueue_many("payloads", [{}, {}, {"x": "\x00"}, {}])


def nested(depth: int) -> Any:
    value: Any = {}
    for i in range(depth):
        value = [value] if i % 2 else {"a": value}
    return value


def test_deeply_nested_payloads(db, queue):
    job_id = queue.enqueue("payloads", nested(500))
    assert queue.get_job(job_id).payload == nested(500)
    # Deeper than Python's JSON encoder can go.
    with Refused(db, pyqueue.InvalidPayload, r"payload is not JSON-serialisable.*recursion"):
        queue.enqueue("payloads", nested(50_000))
    # Through SQL the jsonb parser runs out of stack and says so.
    with Refused(db, errors.StatementTooComplex, r"stack depth limit"):
        db.execute("SELECT pyqueue.enqueue('payloads', %s::jsonb)", ["[" * 200_000 + "]" * 200_000])


UNSERIALISABLE = {
    "object": object(),
    "set": {1, 2},
    "bytes": b"bytes",
    "nan": float("nan"),
    "inf": float("inf"),
    "tuple key": {("a", "b"): 1},
    "huge int": 10**5000,
}
NOT_JSON = ["not json", '{"a":', "{a: 1}", "'x'", "NaN", "[1,]", ""]


# Cases share one database (a fresh one costs a second); Refused checks that
# each left it untouched and working.
def test_python_values_json_cannot_hold(db, queue):
    for label, payload in UNSERIALISABLE.items():
        with Refused(db, pyqueue.InvalidPayload, r"payload is not JSON-serialisable", label):
            queue.enqueue("payloads", payload)


def test_text_that_is_not_json_through_sql(db):
    for text in NOT_JSON:
        with Refused(
            db, errors.InvalidTextRepresentation, r"invalid input syntax for type json", text
        ):
            db.execute("SELECT pyqueue.enqueue('payloads', %s::jsonb)", [text])


def test_a_null_payload_through_sql_is_named(db):
    with Refused(db, errors.InvalidParameterValue, r"payload must not be NULL"):
        db.execute("SELECT pyqueue.enqueue('payloads', NULL)")


@hostile
@given(size=st.integers(min_value=0, max_value=400), through=st.sampled_from(["sql", "python"]))
def test_payload_size_limit(db, queue, size, through):
    db.execute("SELECT pyqueue.configure_queue('small', max_payload_bytes => 200)")
    payload = {"x": "y" * size}
    stored = db.execute("SELECT pg_column_size(%s::jsonb)", [Jsonb(payload)]).fetchone()[0]

    def enqueue() -> int:
        if through == "sql":
            return int(
                db.execute("SELECT pyqueue.enqueue('small', %s)", [Jsonb(payload)]).fetchone()[0]
            )
        return queue.enqueue("small", payload)

    if stored <= 200:
        assert queue.get_job(enqueue()).payload == payload
    else:
        limit = rf"payload is {stored} bytes, over the queue's limit of 200 bytes"
        with Refused(db, (pyqueue.PyqueueError, errors.ProgramLimitExceeded), limit):
            enqueue()


def test_payload_over_the_default_limit(db, queue):
    with Refused(
        db, (pyqueue.PyqueueError, errors.ProgramLimitExceeded), r"limit of 1048576 bytes"
    ):
        queue.enqueue("payloads", {"x": "y" * (2 * 1024 * 1024)})


def test_one_oversized_payload_writes_none_of_its_batch(db, queue):
    db.execute("SELECT pyqueue.configure_queue('small', max_payload_bytes => 200)")
    with Refused(
        db, (pyqueue.PyqueueError, errors.ProgramLimitExceeded), r"payloads\[2\] is \d+ bytes"
    ):
        queue.enqueue_many("small", [{}, {"x": "y" * 1000}, {}])


# ---- numbers and durations ------------------------------------------------------

INT4 = st.integers(min_value=-(2**31), max_value=2**31 - 1)


@hostile
@given(priority=INT4)
def test_priority_range(db, queue, priority):
    if -32768 <= priority <= 32767:
        assert queue.get_job(queue.enqueue("numbers", {}, priority=priority)).priority == priority
    else:
        with Refused(db, pyqueue.InvalidArgument, r"priority must be between -32768 and 32767"):
            queue.enqueue("numbers", {}, priority=priority)


@hostile
@given(attempts=INT4)
def test_max_attempts_range(db, queue, attempts):
    if 1 <= attempts <= 1000:
        job_id = queue.enqueue("numbers", {}, max_attempts=attempts)
        assert queue.get_job(job_id).max_attempts == attempts
    else:
        with Refused(db, pyqueue.InvalidArgument, r"max_attempts must be between 1 and 1000"):
            queue.enqueue("numbers", {}, max_attempts=attempts)


@hostile
@given(delay=st.timedeltas())
def test_delay_range(db, queue, delay):
    if timedelta(0) <= delay <= timedelta(days=3650):
        queue.enqueue("numbers", {}, delay=delay)
    elif delay < timedelta(0):
        with Refused(db, pyqueue.InvalidArgument, r"delay must be zero or positive"):
            queue.enqueue("numbers", {}, delay=delay)
    else:
        with Refused(db, pyqueue.InvalidArgument, r"delay must be at most 10 years"):
            queue.enqueue("numbers", {}, delay=delay)


@hostile
@given(run_at=st.datetimes(timezones=st.just(UTC)))
def test_any_finite_run_at_is_accepted(db, queue, run_at):
    job_id = queue.enqueue("numbers", {}, run_at=run_at)
    assert queue.get_job(job_id).run_at == run_at


ABSURD_SQL_CALLS = [
    ("pyqueue.enqueue('n', '{}', run_at => 'infinity')", r"run_at must be a finite time"),
    ("pyqueue.enqueue('n', '{}', run_at => '-infinity')", r"run_at must be a finite time"),
    ("pyqueue.enqueue('n', '{}', run_at => now(), delay => '1 s')", r"run_at or delay"),
    ("pyqueue.enqueue('n', '{}', priority => NULL)", r"priority must not be NULL"),
    ("pyqueue.enqueue('n', '{}', backoff_base => '0 s')", r"backoff_base must be positive"),
    ("pyqueue.enqueue('n', '{}', backoff_max => '-5 days')", r"backoff_max must be positive"),
    ("pyqueue.enqueue('n', '{}', delay => '4000 days')", r"delay must be at most 10 years"),
    ("pyqueue.enqueue('n', '{}', idempotency_key => '')", r"idempotency_key must not be empty"),
    ("pyqueue.enqueue_batch('n', NULL)", r"payloads must not be NULL"),
    ("pyqueue.enqueue_batch('n', ARRAY[['1'], ['2']]::jsonb[])", r"one-dimensional"),
    (
        "pyqueue.enqueue_batch('n', ARRAY['1']::jsonb[], idempotency_keys => ARRAY['a', 'b'])",
        r"idempotency_keys has 2 elements, payloads has 1",
    ),
    ("pyqueue.claim_batch('{}', 'w')", r"queues must name at least one queue"),
    ("pyqueue.claim_batch(ARRAY['n'], '')", r"worker must name the worker"),
    ("pyqueue.claim_batch(ARRAY['n'], 'w', 0)", r"batch_size must be between 1 and 10000"),
    ("pyqueue.claim_batch(ARRAY['n'], 'w', 2000000000)", r"batch_size must be between"),
    ("pyqueue.claim_batch(ARRAY['n'], 'w', 1, '-1 s')", r"lease must be positive"),
    ("pyqueue.claim_batch(ARRAY['n'], 'w', 1, '100 years')", r"lease must be at most 10 years"),
    (
        "pyqueue.heartbeat(ARRAY[1, 2], ARRAY[gen_random_uuid()])",
        r"job_ids has 2 elements, lease_tokens has 1",
    ),
    ("pyqueue.heartbeat(ARRAY[1], ARRAY[gen_random_uuid()], NULL)", r"lease must not be NULL"),
    ("pyqueue.complete_batch(NULL, NULL)", r"must not be NULL"),
    ("pyqueue.recover_expired(0)", r"max_jobs must be between 1 and 100000"),
    ("pyqueue.list_jobs(max_rows => -1)", r"max_rows must be between 1 and 100000"),
    ("pyqueue.list_jobs(status => 'x''; --')", r"unknown status"),
    ("pyqueue.purge(older_than => '-1 s')", r"older_than must be zero or positive"),
    (
        "pyqueue.configure_queue('n', max_attempts => 0)",
        r"max_attempts must be between 1 and 1000",
    ),
    (
        "pyqueue.configure_queue('n', max_payload_bytes => 0)",
        r"max_payload_bytes must be between",
    ),
    (
        "pyqueue.configure_queue('n', retention => '-1 day')",
        r"retention must be zero or positive",
    ),
    ("pyqueue.configure_queue('bad name', max_attempts => 5)", r"invalid queue name"),
]


def test_absurd_arguments_through_sql(db):
    for call, match in ABSURD_SQL_CALLS:
        with Refused(db, errors.InvalidParameterValue, match, call):
            db.execute(f"SELECT * FROM {call}")


def test_integers_beyond_int4_write_nothing(db, queue):
    # Whatever the error says, nothing may be written.
    for options in ({"priority": 2**31}, {"priority": -(2**63)}, {"max_attempts": 2**40}):
        with Refused(db, (pyqueue.PyqueueError, psycopg.Error), r"."):
            queue.enqueue("numbers", {}, **options)


def test_integers_beyond_int4_are_named(db, queue):
    for name, options in [
        ("priority", {"priority": 2**31}),
        ("max_attempts", {"max_attempts": 2**40}),
    ]:
        with Refused(db, pyqueue.InvalidArgument, name):
            queue.enqueue("numbers", {}, **options)


# ---- idempotency keys ---------------------------------------------------------


@hostile
@given(key=st.one_of(st.sampled_from(NASTY_NAMES[1:]), texts.filter(bool)))
def test_any_idempotency_key_is_held_once_up_to_1000_bytes(db, queue, key):
    size = len(key.encode())
    if size > 1000:
        with Refused(
            db, pyqueue.InvalidArgument, rf"idempotency_key is {size} bytes, over the limit of 1000"
        ):
            queue.enqueue("keys", {}, idempotency_key=key)
        return
    first = queue.enqueue("keys", {"n": 1}, idempotency_key=key)
    assert queue.enqueue("keys", {"n": 2}, idempotency_key=key) == first
    assert queue.get_job(first).idempotency_key == key


def test_idempotency_key_with_a_nul_character(db, queue):
    with Refused(db, (pyqueue.PyqueueError, psycopg.DataError), r"NUL"):
        queue.enqueue("keys", {}, idempotency_key="k\x00")


def test_an_over_long_idempotency_key_is_named(db, queue):
    # Random hex does not compress: without the limit, the key index could not
    # hold it and the error would not name the key.
    key = secrets.token_hex(6000)
    with Refused(db, pyqueue.InvalidArgument, r"idempotency_key is 12000 bytes, over the limit"):
        queue.enqueue("keys", {}, idempotency_key=key)
    with Refused(db, pyqueue.InvalidArgument, r"idempotency_keys\[2\] is 12000 bytes"):
        queue.enqueue_many("keys", [{}, {}], idempotency_keys=["fine", key])


# ---- ids that do not exist -------------------------------------------------------

INT8 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def job_exists(db: psycopg.Connection[Any], job_id: int) -> bool:
    """Whether any job, dead letters included, has this id."""
    return bool(scalar(db, "SELECT EXISTS (SELECT FROM pyqueue.all_jobs WHERE id = %s)", [job_id]))


@hostile
@given(job_id=INT8)
def test_unknown_ids_through_python(db, queue, job_id):
    assume(not job_exists(db, job_id))
    for call in (queue.get_job, queue.cancel, queue.retry_dead):
        # The working job Refused enqueues after each call can take this id.
        if job_exists(db, job_id):
            break
        with Refused(db, pyqueue.JobNotFound, rf"no job with id {job_id}\b"):
            call(job_id)


@hostile
@given(job_id=INT8)
def test_unknown_ids_through_sql(db, job_id):
    assume(not job_exists(db, job_id))
    token = uuid.uuid4()
    for call in ("pyqueue.complete(%s, %s)", "pyqueue.fail(%s, %s, 'boom')"):
        # The working job Refused enqueues after each call can take this id
        # (found in a run: job 67 completed). The batch calls below hold for a
        # taken id too: the token is random.
        if job_exists(db, job_id):
            break
        with Refused(db, errors.NoDataFound, rf"no job with id {job_id}\b"):
            db.execute(f"SELECT {call}", [job_id, token])
    # Batch and best-effort calls answer "not held" instead of raising.
    before = fingerprint(db)
    assert (
        db.execute("SELECT * FROM pyqueue.heartbeat(%s, %s)", [[job_id], [token]]).fetchall() == []
    )
    assert db.execute("SELECT * FROM pyqueue.release(%s, %s)", [[job_id], [token]]).fetchall() == []
    assert (
        db.execute("SELECT * FROM pyqueue.complete_batch(%s, %s)", [[job_id], [token]]).fetchall()
        == []
    )
    assert db.execute("SELECT pyqueue.report_progress(%s, %s, 50)", [job_id, token]).fetchone() == (
        False,
    )
    assert fingerprint(db) == before
    assert_queue_works(db)


def test_a_live_job_is_not_a_dead_letter(db, queue):
    job_id = queue.enqueue("ids", {})
    with Refused(
        db, pyqueue.JobStateError, rf"job {job_id} is not dead-lettered \(status pending\)"
    ):
        queue.retry_dead(job_id)


def test_a_wrong_lease_token_changes_nothing(db):
    db.execute("SELECT pyqueue.enqueue('ids', '{}')")
    job_id, token = db.execute(
        "SELECT id, lease_token FROM pyqueue.claim_batch(ARRAY['ids'], 'w', 1)"
    ).fetchone()
    before = fingerprint(db)
    forged = uuid.uuid4()
    assert db.execute("SELECT pyqueue.complete(%s, %s)", [job_id, forged]).fetchone() == (False,)
    assert db.execute("SELECT pyqueue.fail(%s, %s, 'x')", [job_id, forged]).fetchone() == ("lost",)
    assert db.execute("SELECT pyqueue.report_progress(%s, %s, 1)", [job_id, forged]).fetchone() == (
        False,
    )
    assert fingerprint(db) == before
    assert db.execute("SELECT pyqueue.complete(%s, %s)", [job_id, token]).fetchone() == (True,)


def test_a_refused_enqueue_in_the_callers_transaction_spares_other_sessions(dsn, db, queue):
    with psycopg.connect(dsn) as conn:
        queue.enqueue("tx", {"n": 1}, conn=conn)
        with pytest.raises(pyqueue.InvalidArgument, match="invalid queue name"):
            queue.enqueue("bad name", {}, conn=conn)
        conn.rollback()
    assert db.execute("SELECT count(*) FROM pyqueue.jobs WHERE queue = 'tx'").fetchone() == (0,)
    assert_queue_works(db)
    job_id = queue.enqueue("tx", json.loads('{"n": 2}'), run_at=datetime.now(UTC))
    assert queue.get_job(job_id).status == "pending"


def test_a_storm_of_the_same_idempotency_key_makes_one_job(dsn, db):
    # A client retrying in a loop from many sessions at once: the unique index
    # decides, every caller gets the same id.
    barrier = threading.Barrier(8)
    ids: list[int] = []

    def hammer() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            barrier.wait(10)
            for _ in range(10):
                row = conn.execute(
                    "SELECT pyqueue.enqueue('keys', '{}', idempotency_key => 'order-1')"
                ).fetchone()
                ids.append(row[0])

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(ids) == 80 and len(set(ids)) == 1
    assert db.execute("SELECT count(*) FROM pyqueue.jobs WHERE queue = 'keys'").fetchone() == (1,)


# ---- the command line -----------------------------------------------------------
#
# Every command, its options and arguments given hostile values, in process
# (a subprocess per case would cost a second each): each must end with exit
# status 1 (refused) or 2 (usage), one line on stderr naming the problem, no
# traceback, nothing written, and the queue working after.

ROUND = "1" + "0" * 5000  # more digits than Python converts to int by default
DEEP_JSON = "[" * 100_000 + "]" * 100_000
# A worker module whose own code raises at import.
RAISING_MODULE = "raise RuntimeError('this module is broken')\n"


def run_cli(dsn: str, args: list[str], stdin: str | bytes | None = None) -> Result:
    return CliRunner().invoke(cli_main, args, env={"DATABASE_URL": dsn}, input=stdin)


def assert_refused_in_one_line(result: Result, label: str, match: str) -> None:
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not crashed, f"{label}: {result.exception!r}"
    assert result.exit_code in (1, 2), f"{label}: exit {result.exit_code}, {result.stdout!r}"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"{label}: {result.stderr!r}"
    assert lines[0].startswith("pyqueue: error: "), f"{label}: {lines[0]!r}"
    assert re.search(match, lines[0]), f"{label}: {lines[0]!r} does not match {match!r}"


HOSTILE_COMMAND_LINES = [
    # (label, command line, what the one line must say)
    ("nested JSON", ["enqueue", "q", DEEP_JSON], "nested too deeply"),
    ("5,000-digit integer", ["enqueue", "q", f'{{"n": {ROUND}}}'], "not usable JSON.*digits"),
    ("NUL payload", ["enqueue", "q", '"a\\u0000b"'], r"\\u0000"),
    ("empty payload", ["enqueue", "q", ""], "payload is not JSON"),
    ("no payload", ["enqueue", "q"], "give the payload"),
    ("payload twice", ["enqueue", "q", "{}", "--payload-file", "-"], "not both"),
    ("payload file missing", ["enqueue", "q", "--payload-file", "/no/such/file"], "No such file"),
    ("payload file a folder", ["enqueue", "q", "--payload-file", "/"], "--payload-file"),
    ("bad queue", ["enqueue", "a b", "{}"], "invalid queue name"),
    ("NUL queue", ["enqueue", "a\x00b", "{}"], "NUL|0x00|invalid queue name"),
    ("surrogate queue", ["enqueue", "a\udc80", "{}"], "lone surrogate"),
    ("delay nan", ["enqueue", "q", "{}", "--delay", "nan"], "not a number of seconds"),
    ("delay inf", ["enqueue", "q", "{}", "--delay", "inf"], "not a number of seconds"),
    ("delay -inf", ["enqueue", "q", "{}", "--delay", "-inf"], "not a number of seconds"),
    ("delay 1e308", ["enqueue", "q", "{}", "--delay", "1e308"], "not a number of seconds"),
    ("delay text", ["enqueue", "q", "{}", "--delay", "soon"], "not a number of seconds"),
    ("delay negative", ["enqueue", "q", "{}", "--delay", "-5"], "delay must be zero or positive"),
    ("priority huge", ["enqueue", "q", "{}", "--priority", ROUND], "not a valid integer"),
    ("priority int8", ["enqueue", "q", "{}", "--priority", str(2**40)], "32-bit"),
    ("attempts 0", ["enqueue", "q", "{}", "--max-attempts", "0"], "max_attempts"),
    ("long key", ["enqueue", "q", "{}", "--idempotency-key", "k" * 5000], "idempotency"),
    ("purge nan", ["purge", "--older-than", "nan"], "not a number of seconds"),
    ("purge inf", ["purge", "--older-than", "inf"], "not a number of seconds"),
    ("purge 1e308", ["purge", "--older-than", "1e308"], "not a number of seconds"),
    ("purge bad queue", ["purge", "--queue", "a b"], "invalid queue name"),
    ("watch nan", ["status", "--watch", "--interval", "nan"], "not a number of seconds"),
    ("watch inf", ["status", "--watch", "--interval", "inf"], "not a number of seconds"),
    ("watch 0", ["status", "--watch", "--interval", "0"], "not a number of seconds"),
    ("jobs status", ["jobs", "--status", "'; DROP TABLE pyqueue.jobs; --"], "unknown status"),
    ("jobs limit", ["jobs", "--limit", "0"], "not in the range"),
    ("jobs limit nan", ["jobs", "--limit", "nan"], "not a valid integer"),
    ("job huge id", ["job", ROUND], "not a valid integer"),
    ("job int8 id", ["job", str(2**70)], "64-bit"),
    ("job negative id", ["job", "--", "-1"], "no job with id -1"),
    ("job option-like id", ["job", "-1"], "No such option"),
    ("job float id", ["job", "1.5"], "not a valid integer"),
    ("cancel huge id", ["cancel", str(2**70)], "64-bit"),
    ("retry huge id", ["retry", str(2**70)], "64-bit"),
    ("retry unknown", ["retry", "0"], "no job with id 0"),
    ("worker ..x:y", ["worker", "..x:y"], "cannot load ..x:y"),
    ("worker :", ["worker", ":"], "expected MODULE:OBJECT"),
    ("worker x:", ["worker", "x:"], "expected MODULE:OBJECT"),
    ("worker NUL", ["worker", "a\x00b:w"], "cannot load"),
    ("worker not a Worker", ["worker", "json:loads"], "not a pyqueue.Worker"),
    ("worker raises", ["worker", "pyqueue_hostile_raises:worker"], "RuntimeError: this module"),
    ("worker poll nan", ["worker", "x:y", "--poll-interval", "nan"], "not a number of seconds"),
    ("worker maint inf", ["worker", "x:y", "--maintenance-interval", "inf"], "not a number"),
    ("worker concurrency", ["worker", "x:y", "--concurrency", ROUND], "not a valid integer"),
    ("maintain rows", ["maintain", "--max-rows", "nan"], "not a valid integer"),
    ("schedule deep", ["schedule", "add", "s", "* * * * *", "q", DEEP_JSON], "nested too deep"),
    ("schedule cron", ["schedule", "add", "s", "99 * * * *", "q"], "invalid cron expression"),
    ("schedule tz", ["schedule", "add", "s", "@daily", "q", "--tz", "../../etc"], "time zone"),
    ("schedule remove", ["schedule", "remove", "\x7f"], "no schedule named"),
    ("dashboard port", ["dashboard", "--port", "99999"], "not in the range"),
    ("unknown command", ["enqueu", "q", "{}"], "No such command"),
    ("unknown option", ["status", "--colour"], "No such option"),
    ("connect timeout nan", ["--connect-timeout", "nan", "status"], "not a number of seconds"),
    ("connect timeout 0", ["--connect-timeout", "0", "status"], "not a number of seconds"),
]


# Cases share one database (a fresh one costs seconds on a busy machine); each
# is checked to have written nothing and to leave the queue working.
def test_hostile_command_lines_get_one_line(dsn, db, tmp_path, monkeypatch):
    (tmp_path / "pyqueue_hostile_raises.py").write_text(RAISING_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    for label, args, match in HOSTILE_COMMAND_LINES:
        before = fingerprint(db)
        assert_refused_in_one_line(run_cli(dsn, args), label, match)
        assert fingerprint(db) == before, f"{label}: a refused command wrote something"
        assert_queue_works(db)


BAD_DATABASE_URLS = [
    ("port out of range", "postgresql://u@127.0.0.1:99999/db", "malformed connection string"),
    ("two ports, one too big", "postgresql://u@127.0.0.1:5432,127.0.0.1:99999/db", "malformed"),
    ("spaces", "postgresql://a b c", "malformed connection string"),
    ("unterminated quote", "host='x", "malformed connection string"),
    ("refused port", "postgresql://u@127.0.0.1:1/db", "unreachable"),
    ("no such host", "postgresql://u@no-such-host.invalid/db", "unreachable"),
]


@pytest.mark.parametrize(("label", "url", "match"), BAD_DATABASE_URLS)
@pytest.mark.parametrize("command", [["migrate"], ["status"], ["jobs"], ["enqueue", "q", "{}"]])
def test_bad_database_urls_get_one_line(label, url, match, command):
    result = CliRunner().invoke(cli_main, ["--database-url", url, *command])
    assert_refused_in_one_line(result, f"{label} {command[0]}", match)


def test_a_payload_from_stdin_or_a_file_beyond_the_command_line_limit(dsn, queue, tmp_path):
    # About 300 kB: more than Linux takes in one command-line argument (128 kB).
    big = {"rows": ["x" * 100] * 3000}
    from_stdin = run_cli(dsn, ["enqueue", "imports", "-"], stdin=json.dumps(big))
    assert from_stdin.exit_code == 0, from_stdin.stderr
    assert queue.get_job(int(from_stdin.stdout)).payload == big
    document = tmp_path / "payload.json"
    document.write_text('{"from": "file"}')
    from_file = run_cli(dsn, ["enqueue", "imports", "--payload-file", str(document)])
    assert queue.get_job(int(from_file.stdout)).payload == {"from": "file"}
    piped = run_cli(dsn, ["enqueue", "imports", "--payload-file", "-"], stdin='"piped"')
    assert queue.get_job(int(piped.stdout)).payload == "piped"
    not_utf8 = run_cli(dsn, ["enqueue", "imports", "-"], stdin=b"\xff\xfe{}")
    assert_refused_in_one_line(not_utf8, "not UTF-8", "UTF-8")


@hostile
@given(
    option=st.sampled_from(
        [
            ["enqueue", "q", "{}", "--delay"],
            ["purge", "--older-than"],
            ["status", "--interval"],
            ["job"],
            ["cancel"],
            ["enqueue", "q"],
            ["enqueue", "q", "{}", "--priority"],
            ["jobs", "--limit"],
            ["--connect-timeout"],
        ]
    ),
    value=st.one_of(
        texts,
        st.floats().map(repr),
        st.integers().map(str),
        st.recursive(st.just("0"), lambda inner: inner.map(lambda s: f"[{s}]"), max_leaves=5),
    ),
)
def test_any_value_of_any_option_is_done_or_one_line(dsn, db, option, value):
    args = [*option, value, "status"] if option == ["--connect-timeout"] else [*option, value]
    result = run_cli(dsn, args)
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not crashed, f"{args}: {result.exception!r}"
    if result.exit_code != 0:
        assert result.exit_code in (1, 2)
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("pyqueue: error: ")
    assert_queue_works(db)
