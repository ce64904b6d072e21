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

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest
from cronsim import CronSim, CronSimError
from helpers import scalar
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    """A wall-clock time in a zone, as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz), fold=fold)


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
        assert answer == expected, (
            f"_cron_next({expr!r}, {after.isoformat()} = {wall(after, zone)}, {zone!r}) "
            f"gave {answer and wall(answer, zone)}, reference {expected and wall(expected, zone)}"
        )
