"""The cron evaluator of sql/15_cron.sql: _cron_next against cronsim, and _cron_check's refusals.

cronsim (a test-only dependency) models Debian cron, daylight-saving changes
included, and is the reference. Two differences from calling it directly are
part of the comparison, not exceptions to it:
- _cron_next is strictly after `after`. Debian's rule runs a specific time once
  in a repeated hour, at its first occurrence, so from within the second pass
  cronsim answers with that first occurrence, which is in the past; the
  reference is cronsim's first answer after `after`.
- cronsim has no macros; the reference is given their expansion.
In a zone whose clocks move by half an hour (Australia/Lord_Howe), cronsim's
answer for an expression that is not at a specific time can skip a matching
instant near a change (it jumps by whole hours from a wall time that is then
skipped or repeated); test_cronsim_skips_* pin two cases. There the reference
is cronsim run on fixed-offset clocks, one per offset the zone takes, keeping
the first answer at which the zone has that offset: the same rule (every instant
whose wall-clock reading matches) with no daylight-saving path in cronsim.
Elsewhere that construction must agree with cronsim itself, and is checked to.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from cronsim import CronSim, CronSimError
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.helpers import scalar, sqlstate_of

CRON_SQL = Path(__file__).resolve().parent.parent / "sql" / "15_cron.sql"
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


@pytest.fixture
def cron(db: psycopg.Connection) -> psycopg.Connection:
    """The test database with sql/15_cron.sql loaded (CREATE OR REPLACE: harmless if migrated)."""
    db.execute(CRON_SQL.read_text())
    return db


def at(text: str, tz: str = "UTC", fold: int = 0) -> datetime:
    """A wall-clock time in a zone, as a UTC datetime: aware datetimes of two zones
    never compare equal when one is in a repeated hour (PEP 495)."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz), fold=fold).astimezone(UTC)


def next_run(
    db: psycopg.Connection, expr: str | None, after: datetime, tz: str = "UTC"
) -> datetime:
    return scalar(db, "SELECT pyqueue._cron_next(%s, %s, %s)", [expr, after, tz])  # type: ignore[no-any-return]


def wall(instant: datetime, tz: str) -> str:
    return instant.astimezone(ZoneInfo(tz)).isoformat()


# ---------------------------------------------------------------- the reference


def _fixed_time(expr: str) -> bool:
    minute, hour = expr.split()[:2]
    return not minute.startswith("*") and not hour.startswith("*")


def _cronsim_after(expr: str, after: datetime, tz: timezone | ZoneInfo) -> datetime | None:
    """cronsim's first answer strictly after `after`; None when it finds none."""
    try:
        answers = CronSim(expr, after.astimezone(tz))
    except CronSimError as error:
        # cronsim refuses an expression that can never fire (0 0 30 2 *).
        assert str(error) == "Bad day-of-month", f"cronsim refused {expr!r}: {error}"
        return None
    for answer in answers:
        if answer > after:
            return answer.astimezone(UTC)
    return None


def _offsets(tz: ZoneInfo, after: datetime) -> list[timedelta]:
    """The zone's offsets over the two years from `after`, the one at `after` first."""
    seen = [after.astimezone(tz).utcoffset()]
    for week in range(0, 105):
        offset = (after + timedelta(weeks=week)).astimezone(tz).utcoffset()
        if offset not in seen:
            seen.append(offset)
    return [s for s in seen if s is not None]


def _every_reading(expr: str, after: datetime, tz: ZoneInfo) -> datetime | None:
    """The first instant after `after` whose wall-clock reading in tz matches, from
    cronsim on fixed-offset clocks, one per offset of the zone: their answers merged
    in time order, the first at which the zone has the clock's offset."""
    clocks = [
        (offset, CronSim(expr, after.astimezone(timezone(offset))))
        for offset in _offsets(tz, after)
    ]
    heads = [(next(answers, None), offset, answers) for offset, answers in clocks]
    for _ in range(100_000):
        live = [head for head in heads if head[0] is not None]
        if not live:
            return None
        answer, offset, answers = min(live, key=lambda head: head[0])  # type: ignore[arg-type,return-value]
        assert answer is not None
        if answer > after and answer.astimezone(tz).utcoffset() == offset:
            return answer.astimezone(UTC)
        heads = [
            (next(answers, None), offset, answers) if head[2] is answers else head for head in heads
        ]
    raise AssertionError(f"no answer from the fixed-offset clocks for {expr!r} after {after}")


def reference(expr: str, after: datetime, zone: str) -> datetime | None:
    spec = MACROS.get(expr.strip().lower(), expr)
    tz = ZoneInfo(zone)
    expected = _cronsim_after(spec, after, tz)
    if expected is None or _fixed_time(spec) or zone == "UTC":
        return expected
    readings = _every_reading(spec, after, tz)
    if zone == "Australia/Lord_Howe":
        return readings
    assert readings == expected, f"the fixed-offset reference disagrees with cronsim: {expr!r}"
    return expected


# ---------------------------------------------------------------- generated expressions

WIDTH = {"minute": 60, "hour": 24, "day": 31, "month": 12, "weekday": 7}
BOUNDS = {"minute": (0, 59), "hour": (0, 23), "day": (1, 31), "month": (1, 12), "weekday": (0, 7)}
NAMES = {
    "month": ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    "weekday": ["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
}


@st.composite
def values(draw: st.DrawFn, field: str) -> tuple[int, str]:
    low, high = BOUNDS[field]
    number = draw(st.integers(low, high))
    names = NAMES.get(field)
    if names and draw(st.booleans()):
        first = 1 if field == "month" else 0
        if number - first < len(names):
            name = names[number - first]
            return number, draw(st.sampled_from([name, name.upper(), name.title()]))
    return number, str(number)


@st.composite
def items(draw: st.DrawFn, field: str) -> str:
    step = st.integers(1, WIDTH[field])
    form = draw(st.sampled_from(["value", "range", "star-step", "range-step", "value-step"]))
    if form == "value":
        return draw(values(field))[1]
    if form == "star-step":
        return f"*/{draw(step)}"
    (a, a_text), (b, b_text) = draw(values(field)), draw(values(field))
    if form == "value-step":
        return f"{a_text}/{draw(step)}"
    if a > b:
        (a, a_text), (b, b_text) = (b, b_text), (a, a_text)
    if form == "range":
        return f"{a_text}-{b_text}"
    # cronsim reads a-a/n as a/n (a to the end); a range with a step has two values here.
    if a == b:
        return f"{a_text}/{draw(step)}"
    return f"{a_text}-{b_text}/{draw(step)}"


@st.composite
def fields(draw: st.DrawFn, field: str) -> str:
    if draw(st.integers(0, 3)) == 0:
        return "*"
    return ",".join(draw(st.lists(items(field), min_size=1, max_size=3)))


# Hours around the zones' changes (Berlin 02:00-03:00, New York 01:00-03:00, Lord
# Howe 01:30-02:30), for expressions that fire on most days: these meet a change.
CHANGE_HOURS = ["*", "1", "2", "3", "0-3", "1,2", "*/2", "1-3/2", "2/12", "*/3"]


@st.composite
def expressions(draw: st.DrawFn) -> str:
    form = draw(st.integers(0, 9))
    if form == 0:
        return draw(st.sampled_from(sorted(MACROS)))
    if form <= 4:
        minute = draw(fields("minute"))
        hour = draw(st.sampled_from(CHANGE_HOURS))
        weekday = draw(st.sampled_from(["*", "*", "0", "1-5", "sun,sat"]))
        return f"{minute} {hour} * * {weekday}"
    return " ".join(draw(fields(f)) for f in ("minute", "hour", "day", "month", "weekday"))


def _transitions(zone: str) -> list[datetime]:
    """The instants (UTC) of the zone's offset changes in 2018-2040, to the minute."""
    tz, found = ZoneInfo(zone), []
    moment = datetime(2018, 1, 1, tzinfo=UTC)
    while moment.year < 2041:
        following = moment + timedelta(days=1)
        if moment.astimezone(tz).utcoffset() != following.astimezone(tz).utcoffset():
            low, high = moment, following
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if middle.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high)
        moment = following
    return found


TRANSITIONS = {zone: _transitions(zone) for zone in ZONES if zone != "UTC"}


@st.composite
def instants(draw: st.DrawFn) -> tuple[datetime, str]:
    zone = draw(st.sampled_from(ZONES))
    if zone != "UTC" and draw(st.integers(0, 3)) > 0:
        near = draw(st.sampled_from(TRANSITIONS[zone]))
        # Within 3 hours of a change, mostly on whole minutes.
        seconds = draw(st.integers(-3 * 3600, 3 * 3600))
        if draw(st.booleans()):
            seconds -= seconds % 60
        return near + timedelta(seconds=seconds), zone
    moment = draw(st.datetimes(datetime(2000, 1, 1), datetime(2060, 1, 1), timezones=st.just(UTC)))
    return moment, zone


cron_settings = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@cron_settings
@given(expr=expressions(), cases=st.lists(instants(), min_size=1, max_size=4))
def test_cron_next_agrees_with_cronsim(cron, expr, cases):
    query = """
        SELECT pyqueue._cron_next(%s, a, z)
        FROM unnest(%s::timestamptz[], %s::text[]) WITH ORDINALITY AS c(a, z, n) ORDER BY n
    """
    got = cron.execute(query, [expr, [a for a, _ in cases], [z for _, z in cases]]).fetchall()
    for (after, zone), (answer,) in zip(cases, got, strict=True):
        expected = reference(expr, after, zone)
        kind = "at a specific time" if _fixed_time(MACROS.get(expr, expr)) else "every reading"
        changes = TRANSITIONS.get(zone, [])
        near = answer is not None and any(abs(answer - c) <= timedelta(hours=3) for c in changes)
        event(f"{zone}, {kind}, {'next run' if near else 'no next run'} within 3 h of a change")
        assert answer == expected, (
            f"_cron_next({expr!r}, {after.isoformat()} = {wall(after, zone)}, {zone!r}) "
            f"gave {answer and wall(answer, zone)}, reference {expected and wall(expected, zone)}"
        )


# ---------------------------------------------------------------- examples


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("* * * * *", "2024-01-01 10:07:33.5", "2024-01-01 10:08"),
        ("* * * * *", "2024-01-01 10:08", "2024-01-01 10:09"),
        ("5 * * * *", "2024-01-01 10:07", "2024-01-01 11:05"),
        ("5,35 * * * *", "2024-01-01 10:07", "2024-01-01 10:35"),
        ("10-12 * * * *", "2024-01-01 10:11", "2024-01-01 10:12"),
        ("10-12 * * * *", "2024-01-01 10:12", "2024-01-01 11:10"),
        ("*/20 * * * *", "2024-01-01 10:41", "2024-01-01 11:00"),
        ("10-30/10 * * * *", "2024-01-01 10:21", "2024-01-01 10:30"),
        ("10-30/10 * * * *", "2024-01-01 10:30", "2024-01-01 11:10"),
        ("45/5 * * * *", "2024-01-01 10:50", "2024-01-01 10:55"),
        ("45/5 * * * *", "2024-01-01 10:55", "2024-01-01 11:45"),
        ("0 9-17/4 * * *", "2024-01-01 13:00", "2024-01-01 17:00"),
        ("0 0 * jan,JUL *", "2024-01-31 00:00", "2024-07-01 00:00"),
        ("0 0 * Feb-mar/1 *", "2024-01-01 00:00", "2024-02-01 00:00"),
        ("0 0 * * mon-Fri", "2024-01-05 00:00", "2024-01-08 00:00"),  # a Friday
        ("0 0 * * 0", "2024-01-01 00:00", "2024-01-07 00:00"),  # a Monday; the 7th is Sunday
        ("0 0 * * 7", "2024-01-01 00:00", "2024-01-07 00:00"),
        ("0 0 * * SUN", "2024-01-01 00:00", "2024-01-07 00:00"),
        ("0 0 * * 5-7", "2024-01-06 00:00", "2024-01-07 00:00"),
        ("0 0 * * mon/2", "2024-01-05 00:00", "2024-01-07 00:00"),  # mon, wed, fri and 7
        ("0 0 31 * *", "2024-01-31 00:00", "2024-03-31 00:00"),
        ("0 0 29 2 *", "2024-03-01 00:00", "2028-02-29 00:00"),
        ("0 12 1,15 * *", "2024-01-15 12:00", "2024-02-01 12:00"),
        ("  0\t0  *  * *  ", "2024-01-01 00:00", "2024-01-02 00:00"),
        ("0 0 1 1 *", "2099-06-01 00:00", "2100-01-01 00:00"),
    ],
)
def test_each_form_of_field(cron, expr, after, expected):
    assert next_run(cron, expr, at(after)) == at(expected)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # Both day fields name values: either matches (the 5th is a Friday).
        ("0 0 13 * fri", "2024-01-05 00:00"),
        ("0 0 13,14 * fri", "2024-01-05 00:00"),
        ("0 0 1,3 * sat", "2024-01-03 00:00"),
        # One of them starts with *: both must (*/10: the 1st, 11th, 21st, 31st).
        ("0 0 13 * *", "2024-01-13 00:00"),
        ("0 0 * * fri", "2024-01-05 00:00"),
        ("0 0 */10 * fri", "2024-03-01 00:00"),
        ("0 0 13 * */7", "2024-10-13 00:00"),  # */7 is Sunday alone
    ],
)
def test_day_of_month_and_day_of_week_combine_the_classic_way(cron, expr, expected):
    assert next_run(cron, expr, at("2024-01-01 00:00")) == at(expected)


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@hourly", "2024-05-15 11:00"),
        ("@daily", "2024-05-16 00:00"),
        ("@midnight", "2024-05-16 00:00"),
        ("@weekly", "2024-05-19 00:00"),  # a Sunday
        ("@monthly", "2024-06-01 00:00"),
        ("@yearly", "2025-01-01 00:00"),
        ("@annually", "2025-01-01 00:00"),
        (" @Daily ", "2024-05-16 00:00"),
    ],
)
def test_each_macro(cron, macro, expected):
    assert next_run(cron, macro, at("2024-05-15 10:30")) == at(expected)
    scalar(cron, "SELECT pyqueue._cron_check(%s, 'UTC')", [macro])


@pytest.mark.parametrize(
    "expr", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "* * 30,31 feb *", "0 0 30 2 */7"]
)
def test_an_expression_that_never_fires_has_no_next_run_and_is_refused(cron, expr):
    assert next_run(cron, expr, at("2024-01-01 00:00"), "Europe/Berlin") is None
    error = sqlstate_of(cron, "SELECT pyqueue._cron_check(%s, 'UTC')", [expr])
    assert error.sqlstate == "22023"
    assert error.diag.message_primary == (
        f"pyqueue: cron expression '{expr}' never fires: no month it allows has a day it allows"
    )


def test_february_30th_on_mondays_fires_on_mondays(cron):
    # Both day fields name values, so Mondays in February are enough.
    assert next_run(cron, "0 0 30 2 mon", at("2024-01-01 00:00")) == at("2024-02-05 00:00")


def _refusal(expr: str, problem: str) -> tuple[str | None, str]:
    return expr, f"pyqueue: invalid cron expression '{expr}': {problem}"


FIELDS = "expected 5 fields (minute hour day-of-month month day-of-week)"


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        _refusal("61 * * * *", "minute 61 is out of range 0-59"),
        _refusal("* 24 * * *", "hour 24 is out of range 0-23"),
        _refusal("* * 0 * *", "day-of-month 0 is out of range 1-31"),
        _refusal("* * 32 * *", "day-of-month 32 is out of range 1-31"),
        _refusal("* * * 13 *", "month 13 is out of range 1-12"),
        _refusal("* * * * 8", "day-of-week 8 is out of range 0-7"),
        _refusal("1-99999999999 * * * *", "minute 99999999999 is out of range 0-59"),
        _refusal("*/0 * * * *", "minute step 0 is out of range 1-60"),
        _refusal("*/61 * * * *", "minute step 61 is out of range 1-60"),
        _refusal("* */25 * * *", "hour step 25 is out of range 1-24"),
        _refusal("* * * * */8", "day-of-week step 8 is out of range 1-7"),
        _refusal("*/x * * * *", "minute step 'x' is not a number"),
        _refusal("*/ * * * *", "minute step '' is not a number"),
        _refusal("*/2/3 * * * *", "minute step '2/3' is not a number"),
        _refusal("30-10 * * * *", "minute range '30-10' is reversed"),
        _refusal("* * * dec-jan *", "month range 'dec-jan' is reversed"),
        _refusal("* * * * sat-mon", "day-of-week range 'sat-mon' is reversed"),
        _refusal("* * * *", f"{FIELDS}, got 4"),
        _refusal("* * * * * *", f"{FIELDS}, got 6"),
        _refusal("", f"{FIELDS}, got 0"),
        _refusal("   ", f"{FIELDS}, got 0"),
        _refusal("* * * foo *", "month 'foo' is neither a number nor a name (jan-dec)"),
        _refusal("* * * * mon2", "day-of-week 'mon2' is neither a number nor a name (sun-sat)"),
        _refusal("* * * * jan", "day-of-week 'jan' is neither a number nor a name (sun-sat)"),
        _refusal("* mon * * *", "hour 'mon' is not a number"),
        _refusal("1-2-3 * * * *", "minute '2-3' is not a number"),
        _refusal("? * * * *", "minute '?' is not a number"),
        _refusal("* * L * *", "day-of-month 'L' is not a number"),
        _refusal("1,,2 * * * *", "minute has an empty value in '1,,2'"),
        _refusal("-5 * * * *", "minute has an empty value in '-5'"),
        _refusal("5, * * * *", "minute has an empty value in '5,'"),
        _refusal(
            "@reboot",
            "unknown macro (use @hourly, @daily, @midnight, @weekly, @monthly, @yearly"
            " or @annually)",
        ),
        (None, "pyqueue: cron expression must not be NULL"),
    ],
)
def test_bad_cron_text_is_refused_naming_the_problem(cron, expr, message):
    for query in (
        "SELECT pyqueue._cron_check(%s, 'UTC')",
        "SELECT pyqueue._cron_next(%s, now(), 'UTC')",
    ):
        error = sqlstate_of(cron, query, [expr])
        assert error.sqlstate == "22023", error
        assert error.diag.message_primary == message


@pytest.mark.parametrize(
    ("tz", "message"),
    [
        ("Mars/Base", "pyqueue: unknown time zone 'Mars/Base'"),
        (None, "pyqueue: time zone must not be NULL"),
    ],
)
def test_an_unknown_time_zone_is_refused(cron, tz, message):
    for query in (
        "SELECT pyqueue._cron_check('0 0 * * *', %s)",
        "SELECT pyqueue._cron_next('0 0 * * *', now(), %s)",
    ):
        error = sqlstate_of(cron, query, [tz])
        assert error.sqlstate == "22023", error
        assert error.diag.message_primary == message


@pytest.mark.parametrize("tz", ["europe/berlin", "UTC+3", "PST", "+03"])
def test_the_check_accepts_zone_names_alone(cron, tz):
    """Names as pg_timezone_names spells them; not abbreviations or POSIX rules."""
    error = sqlstate_of(cron, "SELECT pyqueue._cron_check('0 0 * * *', %s)", [tz])
    assert error.diag.message_primary == f"pyqueue: unknown time zone '{tz}'"
    scalar(cron, "SELECT pyqueue._cron_check('0 0 * * *', 'Europe/Berlin')")


@pytest.mark.parametrize("after", [None, "infinity", "-infinity"])
def test_after_must_be_a_finite_time(cron, after):
    error = sqlstate_of(cron, "SELECT pyqueue._cron_next('* * * * *', %s::timestamptz)", [after])
    assert error.sqlstate == "22023"
    assert (
        error.diag.message_primary == f"pyqueue: after must be a finite time, got {after or 'NULL'}"
    )


# ---------------------------------------------------------------- daylight saving

BERLIN, NEW_YORK, LORD_HOWE = "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"


@pytest.mark.parametrize(
    ("expr", "tz", "after", "fold", "expected", "expected_fold"),
    [
        # A specific time skipped by the jump forward runs at the jump, once.
        ("30 2 * * *", BERLIN, "2024-03-31 01:45", 0, "2024-03-31 03:00", 0),
        ("0,15 2 * * *", BERLIN, "2024-03-31 03:00", 0, "2024-04-01 02:00", 0),
        ("15 2 * * *", LORD_HOWE, "2024-10-06 01:45", 0, "2024-10-06 02:30", 0),
        # A specific time repeated by the jump back runs once, at the first occurrence.
        ("30 2 * * *", BERLIN, "2024-10-27 02:10", 0, "2024-10-27 02:30", 0),
        ("30 2 * * *", BERLIN, "2024-10-27 02:10", 1, "2024-10-28 02:30", 0),
        ("30 1 * * *", NEW_YORK, "2024-11-03 01:40", 0, "2024-11-04 01:30", 0),
        ("45 1 * * *", LORD_HOWE, "2024-04-07 01:40", 1, "2024-04-08 01:45", 0),
        # Other expressions fire at every matching reading: never in the gap, twice in the overlap.
        ("10 * * * *", BERLIN, "2024-03-31 01:50", 0, "2024-03-31 03:10", 0),
        ("10 * * * *", BERLIN, "2024-10-27 02:50", 0, "2024-10-27 02:10", 1),
        ("*/30 2 * * *", BERLIN, "2024-03-31 01:00", 0, "2024-04-01 02:00", 0),
        ("*/30 2 * * *", BERLIN, "2024-10-27 02:30", 0, "2024-10-27 02:00", 1),
        ("* * * * *", NEW_YORK, "2024-11-03 01:59", 0, "2024-11-03 01:00", 1),
    ],
)
def test_daylight_saving_changes_follow_debian_cron(
    cron, expr, tz, after, fold, expected, expected_fold
):
    start = at(after, tz, fold)
    assert next_run(cron, expr, start, tz) == at(expected, tz, expected_fold)
    assert reference(expr, start, tz) == at(expected, tz, expected_fold)


@pytest.mark.parametrize(
    ("expr", "after", "fold", "expected", "expected_fold", "cronsim_says"),
    [
        # 02:00 is skipped: cronsim jumps an hour from it and lands on 03:30.
        ("*/15 3 * * *", "2024-10-06 02:40", 0, "2024-10-06 03:00", 0, "2024-10-06 03:30"),
        # cronsim jumps 50 minutes of real time, past the second 01:40.
        ("40 * * * *", "2024-04-07 01:50", 0, "2024-04-07 01:40", 1, "2024-04-07 02:40"),
    ],
)
def test_cronsim_skips_readings_where_clocks_move_half_an_hour(
    cron, expr, after, fold, expected, expected_fold, cronsim_says
):
    start = at(after, LORD_HOWE, fold)
    assert next_run(cron, expr, start, LORD_HOWE) == at(expected, LORD_HOWE, expected_fold)
    assert reference(expr, start, LORD_HOWE) == at(expected, LORD_HOWE, expected_fold)
    assert _cronsim_after(expr, start, ZoneInfo(LORD_HOWE)) == at(cronsim_says, LORD_HOWE, 1)


# ---------------------------------------------------------------- strictly after


@pytest.mark.parametrize(
    ("expr", "tz", "start"),
    [
        ("* * * * *", NEW_YORK, "2024-11-03 00:30"),
        ("*/20 * * * *", BERLIN, "2024-10-27 00:00"),
        ("30 2 * * *", BERLIN, "2024-03-29 00:00"),
        ("0,15 2 * * *", BERLIN, "2024-03-30 00:00"),
        ("0-59/7 1,2 * * *", LORD_HOWE, "2024-04-06 00:00"),
        ("*/10 2 * * *", LORD_HOWE, "2024-10-05 00:00"),
        ("0 0 29 2 *", "UTC", "2000-01-01 00:00"),
        ("@weekly", "Asia/Kolkata", "2024-01-01 00:00"),
    ],
)
def test_each_next_run_is_strictly_after_the_one_before(cron, expr, tz, start):
    runs = [at(start, tz)]
    for _ in range(60):
        runs.append(next_run(cron, expr, runs[-1], tz))
    for before, run in itertools.pairwise(runs):
        assert run > before, f"{expr!r} in {tz}: {wall(run, tz)} after {wall(before, tz)}"
        # From a microsecond before a run, that run is next.
        assert next_run(cron, expr, run - timedelta(microseconds=1), tz) == run
