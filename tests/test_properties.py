"""Properties of the SQL API, checked with hypothesis against a real database.

One database per test (the `db` fixture); examples that write clean up after
themselves so that each starts from empty tables.
"""

from __future__ import annotations

import re
from datetime import timedelta

import psycopg
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import pyqueue
from tests.helpers import claim, claim_one, counts, enqueue, scalar

db_settings = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    deadline=None,
    max_examples=100,
)

MICROSECOND = timedelta(microseconds=1)
TEN_YEARS_US = 3650 * 86400 * 10**6

intervals_us = st.integers(min_value=1, max_value=TEN_YEARS_US)
jitters = st.floats(min_value=0, max_value=1)


def _clear(db: psycopg.Connection) -> None:
    db.execute("DELETE FROM pyqueue.jobs; DELETE FROM pyqueue.dead_jobs")


def _delays(db, base_us, cap_us, attempts_and_jitters):
    query = "SELECT pyqueue.backoff_delay(%s, %s, %s, %s)"
    base, cap = timedelta(microseconds=base_us), timedelta(microseconds=cap_us)
    return [scalar(db, query, [a, base, cap, j]) for a, j in attempts_and_jitters]


def _ceiling_us(attempt, base_us, cap_us):
    return min(base_us * 2 ** (min(max(attempt, 1), 61) - 1), cap_us)


# ---------------------------------------------------------------- backoff


@db_settings
@given(
    base_us=intervals_us,
    cap_us=intervals_us,
    start=st.integers(min_value=1, max_value=40),
    jitter_list=st.lists(jitters, min_size=2, max_size=8),
)
def test_backoff_never_shrinks_until_the_cap_and_never_exceeds_it(
    db, base_us, cap_us, start, jitter_list
):
    attempts = list(range(start, start + len(jitter_list)))
    delays = _delays(db, base_us, cap_us, zip(attempts, jitter_list, strict=True))
    cap = timedelta(microseconds=cap_us)
    for attempt, delay in zip(attempts, delays, strict=True):
        ceiling = timedelta(microseconds=_ceiling_us(attempt, base_us, cap_us))
        assert ceiling / 2 - MICROSECOND <= delay <= ceiling + MICROSECOND, (attempt, delay)
        assert delay <= cap + MICROSECOND
    for attempt, earlier, later in zip(attempts, delays, delays[1:], strict=False):
        # Until the cap: the next ceiling is twice this one, so even the lowest
        # draw of the next delay reaches the highest draw of this one.
        if base_us * 2**attempt <= cap_us:
            assert earlier <= later + MICROSECOND, (attempt, earlier, later)


@db_settings
@given(
    attempt=st.integers(min_value=-5, max_value=1000),
    base_us=intervals_us,
    cap_us=intervals_us,
    jitter=st.floats(min_value=-100, max_value=100),
)
def test_backoff_stays_within_half_ceiling_and_ceiling_for_any_jitter(
    db, attempt, base_us, cap_us, jitter
):
    (delay,) = _delays(db, base_us, cap_us, [(attempt, jitter)])
    ceiling = timedelta(microseconds=_ceiling_us(attempt, base_us, cap_us))
    assert ceiling / 2 - MICROSECOND <= delay <= ceiling + MICROSECOND
    if jitter <= 0:
        assert abs(delay - ceiling / 2) <= MICROSECOND
    if jitter >= 1:
        assert abs(delay - ceiling) <= MICROSECOND


def test_backoff_with_its_default_random_jitter_stays_in_bounds(db):
    found = db.execute(
        "SELECT min(d), max(d), count(DISTINCT d)"
        " FROM (SELECT pyqueue.backoff_delay(3, '1 second', '1 hour') AS d"
        "       FROM generate_series(1, 2000)) AS draws"
    ).fetchone()
    low, high, distinct = found
    assert timedelta(seconds=2) <= low and high <= timedelta(seconds=4)
    assert distinct > 100  # it is jittered, not a constant


# ---------------------------------------------------------------- progress


def test_progress_is_always_stored_clamped_to_0_100(db):
    job_id = enqueue(db)
    token = claim_one(db).lease_token
    last = {"progress": None, "message": None}

    @db_settings
    @given(
        progress=st.one_of(st.none(), st.integers(min_value=-(2**31), max_value=2**31 - 1)),
        message=st.one_of(
            st.none(),
            st.text(
                # Text PostgreSQL can store: no NUL, no lone surrogates (not Unicode).
                alphabet=st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
            ),
        ),
    )
    def check(progress, message):
        assert scalar(
            db,
            "SELECT pyqueue.report_progress(%s, %s, %s, %s)",
            [job_id, token, progress, message],
        )
        stored = db.execute(
            "SELECT progress, progress_message FROM pyqueue.jobs WHERE id = %s", [job_id]
        ).fetchone()
        if progress is not None:
            last["progress"] = max(0, min(100, progress))
        if message is not None:
            last["message"] = message[:1000]
        assert stored == (last["progress"], last["message"])

    check()


# ---------------------------------------------------------------- bad input

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
no_nul = st.characters(exclude_characters="\x00")
bad_names = st.one_of(
    st.text(alphabet=no_nul, max_size=120),
    st.text(alphabet="ab;' \"-_.:\t\n\\éß€😀", max_size=12),
    st.text(alphabet="abc", min_size=101, max_size=130),
).filter(lambda name: NAME.fullmatch(name) is None)


@db_settings
@given(name=bad_names, through=st.sampled_from(["sql", "python"]))
def test_invalid_queue_names_are_always_refused_and_write_nothing(db, queue, name, through):
    if through == "sql":
        # No client can send a lone surrogate (it is not Unicode), so SQL never
        # meets one; the Python client refuses it itself (the other branch).
        assume(not any("\ud800" <= c <= "\udfff" for c in name))
        try:
            enqueue(db, name)
        except psycopg.Error as error:
            assert error.sqlstate == "22023"
            assert "invalid queue name" in error.diag.message_primary
        else:
            raise AssertionError(f"queue name {name!r} was accepted")
    else:
        try:
            queue.enqueue(name, {})
        except pyqueue.InvalidArgument as error:
            assert "invalid queue name" in str(error)
        else:
            raise AssertionError(f"queue name {name!r} was accepted")
    assert counts(db) == (0, 0)


@db_settings
@given(name=st.from_regex(NAME, fullmatch=True))
def test_valid_queue_names_are_always_accepted(db, name):
    job_id = enqueue(db, name)
    assert [c.id for c in claim(db, name)] == [job_id]
    _clear(db)


INT4 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
bad_numbers = st.one_of(
    st.tuples(st.just("max_attempts"), INT4.filter(lambda n: not 1 <= n <= 1000)),
    st.tuples(st.just("priority"), INT4.filter(lambda n: not -32768 <= n <= 32767)),
    st.tuples(st.just("delay"), st.timedeltas(max_value=-MICROSECOND)),
    st.tuples(st.just("delay"), st.timedeltas(min_value=timedelta(days=3651))),
    st.tuples(st.just("backoff_base"), st.timedeltas(max_value=timedelta(0))),
    st.tuples(st.just("backoff_max"), st.timedeltas(max_value=timedelta(0))),
)


@db_settings
@given(bad=bad_numbers, batch=st.booleans())
def test_out_of_range_options_are_always_refused_and_write_nothing(db, bad, batch):
    option, value = bad
    if batch:
        query = f"SELECT pyqueue.enqueue_batch('q', ARRAY['1', '2']::jsonb[], {option} => %s)"
    else:
        query = f"SELECT pyqueue.enqueue('q', '{{}}', {option} => %s)"
    try:
        db.execute(query, [value])
    except psycopg.Error as error:
        assert error.sqlstate == "22023", error
        assert error.diag.message_primary.startswith(f"pyqueue: {option} must be")
    else:
        raise AssertionError(f"{option} = {value!r} was accepted")
    assert counts(db) == (0, 0)


# ---------------------------------------------------------------- claim order and keys


@db_settings
@given(
    jobs=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c"]),
            st.integers(min_value=-2, max_value=2),
            st.integers(min_value=0, max_value=3),
        ),
        max_size=15,
    ),
    batch_sizes=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=5),
)
def test_claims_take_due_jobs_by_priority_then_run_at_then_id(db, jobs, batch_sizes):
    expected = []
    for queue_name, priority, minutes_ago in jobs:
        job_id = enqueue(
            db,
            queue_name,
            priority=priority,
            run_at=scalar(db, "SELECT now() - %s * interval '1 minute'", [minutes_ago]),
        )
        if queue_name != "c":  # not claimed from
            expected.append((-priority, -minutes_ago, job_id))
    order = [job_id for _, _, job_id in sorted(expected)]
    claimed = []
    for size in batch_sizes:
        claimed += [c.id for c in claim(db, ["a", "b"], size)]
    claimed += [c.id for c in claim(db, ["b", "a"], 100)]
    assert claimed == order
    _clear(db)


@db_settings
@given(keys=st.lists(st.one_of(st.none(), st.sampled_from("uvwxyz")), max_size=12))
def test_enqueue_batch_gives_one_job_per_distinct_key(db, keys):
    assume(keys)
    ids = [
        r[0]
        for r in db.execute(
            "SELECT pyqueue.enqueue_batch('q', %s::jsonb[], idempotency_keys => %s)",
            [[str(n) for n in range(len(keys))], keys],
        )
    ]
    assert len(ids) == len(keys)
    for i, key in enumerate(keys):
        for j, other in enumerate(keys):
            same = i == j or (key is not None and key == other)
            assert (ids[i] == ids[j]) == same, (keys, ids)
    distinct = len({k for k in keys if k is not None}) + keys.count(None)
    assert counts(db) == (distinct, 0)
    _clear(db)
