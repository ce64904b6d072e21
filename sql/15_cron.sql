-- Cron: when a cron expression next fires, computed in the database so that a
-- worker in any language can fire schedules by calling SQL.
--
-- The syntax is Debian cron's five fields: minute hour day-of-month month
-- day-of-week, each a list (a,b) of *, a number, a range a-b, a step */n,
-- a-b/n or a/n (a to the field's last value), with month names jan-dec and
-- weekday names sun-sat in any case; weekday 0 and 7 are both Sunday. A step is
-- 1 to the number of values in its field (60 for minutes, 7 for weekdays): a
-- larger one would always mean the first value alone. The macros @hourly,
-- @daily (@midnight), @weekly, @monthly and @yearly (@annually) stand for
-- 0 * * * *, 0 0 * * *, 0 0 * * 0, 0 0 1 * * and 0 0 1 1 *.
--
-- Day-of-month and day-of-week combine as in Vixie and Debian cron: when
-- either field starts with * (so */2 counts as *), a day must match both;
-- otherwise a day matches when either does.
--
-- The expression reads wall-clock time in a time zone, and daylight-saving
-- changes follow Debian cron (and cronsim, its Python model, which the tests
-- compare against):
-- * An expression whose minute and hour fields both name values (neither starts
--   with *) runs at a specific time. Its wall times are found on the calendar
--   alone; a wall time that a jump forward skips runs at the jump (02:30 on a
--   day when 02:00 becomes 03:00 runs at 03:00), and a wall time that a jump
--   back repeats runs once, at its first occurrence.
-- * Any other expression fires at every instant whose wall-clock reading
--   matches: a skipped wall time never happens, a repeated one fires twice.
-- In UTC, and in any zone without a change nearby, the two readings agree.

-- _cron_field(expr, field, name, low, high) -> boolean[] indexed low..high:
-- which values one field of a cron expression allows. name is the field's name
-- in messages (minute, hour, day-of-month, month, day-of-week); expr, the whole
-- expression, is only quoted in them. Raises 22023 naming the bad part.
CREATE OR REPLACE FUNCTION pyqueue._cron_field(expr text, field text, name text, low integer, high integer)
RETURNS boolean[]
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    names    text[] := CASE name
                           WHEN 'month' THEN '{jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec}'::text[]
                           WHEN 'day-of-week' THEN '{sun,mon,tue,wed,thu,fri,sat}'::text[]
                       END;
    -- names[i] stands for the value first_named + i - 1.
    first_named integer := CASE name WHEN 'month' THEN 1 ELSE 0 END;
    -- Weekdays take the values 0 to 7, yet have 7 distinct ones.
    width    integer := CASE name WHEN 'day-of-week' THEN 7 ELSE high - low + 1 END;
    allowed  boolean[] := array_fill(false, ARRAY[high - low + 1], ARRAY[low]);
    quoted   text := quote_literal(left(expr, 120));
    item     text;
    span     text;
    bounds   text[];
    bound    text;
    bound_values integer[];
    step     integer;
BEGIN
    FOREACH item IN ARRAY string_to_array(field, ',') LOOP
        IF item = '' THEN
            RAISE EXCEPTION 'pyqueue: invalid cron expression %: % has an empty value in %',
                quoted, name, quote_literal(field)
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        span := split_part(item, '/', 1);
        step := 1;
        IF strpos(item, '/') > 0 THEN
            bound := substr(item, strpos(item, '/') + 1);
            IF bound !~ '^[0-9]+$' THEN
                RAISE EXCEPTION 'pyqueue: invalid cron expression %: % step % is not a number',
                    quoted, name, quote_literal(bound)
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF bound::numeric < 1 OR bound::numeric > width THEN
                RAISE EXCEPTION 'pyqueue: invalid cron expression %: % step % is out of range 1-%',
                    quoted, name, bound, width
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            step := bound::integer;
        END IF;

        IF span = '*' THEN
            bound_values := ARRAY[low, high];
        ELSE
            -- a, or a-b: the text before the first - and the rest.
            bounds := CASE WHEN strpos(span, '-') > 0
                           THEN ARRAY[split_part(span, '-', 1), substr(span, strpos(span, '-') + 1)]
                           ELSE ARRAY[span] END;
            bound_values := '{}';
            FOREACH bound IN ARRAY bounds LOOP
                IF bound = '' THEN
                    RAISE EXCEPTION 'pyqueue: invalid cron expression %: % has an empty value in %',
                        quoted, name, quote_literal(field)
                        USING ERRCODE = 'invalid_parameter_value';
                ELSIF lower(bound) = ANY (names) THEN
                    bound_values := bound_values || (array_position(names, lower(bound)) + first_named - 1);
                ELSIF bound !~ '^[0-9]+$' THEN
                    RAISE EXCEPTION 'pyqueue: invalid cron expression %: % %', quoted, name,
                        CASE WHEN names IS NULL THEN quote_literal(bound) || ' is not a number'
                             ELSE quote_literal(bound) || ' is neither a number nor a name ('
                                  || names[1] || '-' || names[cardinality(names)] || ')' END
                        USING ERRCODE = 'invalid_parameter_value';
                ELSIF bound::numeric < low OR bound::numeric > high THEN
                    RAISE EXCEPTION 'pyqueue: invalid cron expression %: % % is out of range %-%',
                        quoted, name, bound, low, high
                        USING ERRCODE = 'invalid_parameter_value';
                ELSE
                    bound_values := bound_values || bound::integer;
                END IF;
            END LOOP;
            IF cardinality(bound_values) = 2 AND bound_values[1] > bound_values[2] THEN
                RAISE EXCEPTION 'pyqueue: invalid cron expression %: % range % is reversed',
                    quoted, name, quote_literal(span)
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            -- a/n runs from a to the field's last value.
            IF cardinality(bound_values) = 1 THEN
                bound_values := ARRAY[bound_values[1], CASE WHEN strpos(item, '/') > 0 THEN high
                                                            ELSE bound_values[1] END];
            END IF;
        END IF;

        FOR value IN bound_values[1]..bound_values[2] BY step LOOP
            allowed[value] := true;
        END LOOP;
    END LOOP;
    RETURN allowed;
END;
$$;

-- _cron_parse(expr) -> (minutes, hours, days, months, weekdays, day_and,
--                       fixed_time, never)
-- A cron expression read into what each field allows (arrays indexed by the
-- field's values; weekdays 0-6, Sunday 0), whether day-of-month and day-of-week
-- must both match (day_and), whether it runs at a specific time (fixed_time:
-- neither minute nor hour starts with *, which decides its daylight-saving
-- rule), and whether it can never fire (never: both day fields must match and
-- no allowed month has an allowed day, as 0 0 30 2 *). Raises 22023 for text
-- that is not a cron expression, NULL included.
CREATE OR REPLACE FUNCTION pyqueue._cron_parse(
    expr           text,
    OUT minutes    boolean[],
    OUT hours      boolean[],
    OUT days       boolean[],
    OUT months     boolean[],
    OUT weekdays   boolean[],
    OUT day_and    boolean,
    OUT fixed_time boolean,
    OUT never      boolean
)
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    spec   text := btrim(expr, E' \t\n\r\f\v');
    fields text[];
    field_count integer;
BEGIN
    IF expr IS NULL THEN
        RAISE EXCEPTION 'pyqueue: cron expression must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF left(spec, 1) = '@' THEN
        spec := CASE lower(spec)
                    WHEN '@hourly' THEN '0 * * * *'
                    WHEN '@daily' THEN '0 0 * * *'
                    WHEN '@midnight' THEN '0 0 * * *'
                    WHEN '@weekly' THEN '0 0 * * 0'
                    WHEN '@monthly' THEN '0 0 1 * *'
                    WHEN '@yearly' THEN '0 0 1 1 *'
                    WHEN '@annually' THEN '0 0 1 1 *'
                END;
        IF spec IS NULL THEN
            RAISE EXCEPTION 'pyqueue: invalid cron expression %: unknown macro (use @hourly, @daily, '
                            '@midnight, @weekly, @monthly, @yearly or @annually)',
                quote_literal(left(expr, 120))
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    fields := CASE WHEN spec = '' THEN '{}' ELSE regexp_split_to_array(spec, '\s+') END;
    field_count := cardinality(fields);
    IF field_count <> 5 THEN
        RAISE EXCEPTION 'pyqueue: invalid cron expression %: expected 5 fields '
                        '(minute hour day-of-month month day-of-week), got %',
            quote_literal(left(expr, 120)), field_count
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    minutes := pyqueue._cron_field(expr, fields[1], 'minute', 0, 59);
    hours := pyqueue._cron_field(expr, fields[2], 'hour', 0, 23);
    days := pyqueue._cron_field(expr, fields[3], 'day-of-month', 1, 31);
    months := pyqueue._cron_field(expr, fields[4], 'month', 1, 12);
    weekdays := pyqueue._cron_field(expr, fields[5], 'day-of-week', 0, 7);
    weekdays[0] := weekdays[0] OR weekdays[7];  -- and 7 is not read again
    day_and := left(fields[3], 1) = '*' OR left(fields[5], 1) = '*';
    fixed_time := left(fields[1], 1) <> '*' AND left(fields[2], 1) <> '*';
    -- Both day fields starting with a value make any allowed weekday enough;
    -- otherwise the allowed days must exist in an allowed month (February has
    -- 29). Every expression not caught here fires within 40 years.
    never := day_and AND (SELECT min(d) FROM generate_series(1, 31) d WHERE days[d])
                       > (SELECT max((ARRAY[31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[m])
                          FROM generate_series(1, 12) m WHERE months[m]);
END;
$$;

-- _cron_next_wall(minutes, hours, days, months, weekdays, day_and, start)
--   -> timestamp
-- The first wall-clock minute at or after start (rounded up to a minute) that
-- the fields allow, found on the calendar alone: months, then days, then hours,
-- then minutes, each jumping to the next allowed value rather than stepping
-- through time. NULL when none falls within 100 years of start's year (no
-- expression that _cron_parse does not call never goes 40 years without one).
CREATE OR REPLACE FUNCTION pyqueue._cron_next_wall(
    minutes  boolean[],
    hours    boolean[],
    days     boolean[],
    months   boolean[],
    weekdays boolean[],
    day_and  boolean,
    start    timestamp
) RETURNS timestamp
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    first_minute timestamp := date_trunc('minute', start)
                              + CASE WHEN date_trunc('minute', start) = start THEN interval '0'
                                     ELSE interval '1 minute' END;
    y         integer := extract(year FROM first_minute);
    mo        integer := extract(month FROM first_minute);
    d         integer := extract(day FROM first_minute);
    h         integer := extract(hour FROM first_minute);
    mi        integer := extract(minute FROM first_minute);
    last_year integer := y + 100;
    day_ok    boolean;
    dow       integer;
BEGIN
    LOOP
        -- A month not allowed, or a day past its end: the next month's start.
        IF NOT months[mo] OR d > extract(day FROM make_date(y, mo, 1) + interval '1 month' - interval '1 day') THEN
            mo := mo + 1;
            IF mo > 12 THEN
                mo := 1;
                y := y + 1;
                IF y > last_year THEN
                    RETURN NULL;
                END IF;
            END IF;
            d := 1;
            h := 0;
            mi := 0;
            CONTINUE;
        END IF;
        dow := extract(dow FROM make_date(y, mo, d));
        day_ok := CASE WHEN day_and THEN days[d] AND weekdays[dow] ELSE days[d] OR weekdays[dow] END;
        IF NOT day_ok THEN
            d := d + 1;
            h := 0;
            mi := 0;
            CONTINUE;
        END IF;
        WHILE h < 24 AND NOT hours[h] LOOP
            h := h + 1;
            mi := 0;
        END LOOP;
        IF h = 24 THEN
            d := d + 1;
            h := 0;
            mi := 0;
            CONTINUE;
        END IF;
        WHILE mi < 60 AND NOT minutes[mi] LOOP
            mi := mi + 1;
        END LOOP;
        IF mi = 60 THEN
            h := h + 1;
            mi := 0;
            CONTINUE;
        END IF;
        RETURN make_timestamp(y, mo, d, h, mi, 0);
    END LOOP;
END;
$$;

-- _cron_offset(at, tz) -> interval: the zone's offset from UTC at an instant
-- (+01:00 for Europe/Berlin in winter), so that wall time = instant + offset.
CREATE OR REPLACE FUNCTION pyqueue._cron_offset(at timestamptz, tz text) RETURNS interval
LANGUAGE sql STABLE
AS $$
    SELECT (at AT TIME ZONE tz) - (at AT TIME ZONE 'UTC')
$$;

-- _cron_transition(low, high, tz) -> timestamptz: the instant in (low, high]
-- where the zone's offset becomes what it is at high, given that it changes
-- once in between. Bisects to the second: offsets change on whole seconds.
CREATE OR REPLACE FUNCTION pyqueue._cron_transition(low timestamptz, high timestamptz, tz text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    target interval := pyqueue._cron_offset(high, tz);
    middle timestamptz;
BEGIN
    low := date_trunc('second', low);
    high := date_trunc('second', high);
    WHILE high - low > interval '1 second' LOOP
        middle := low + floor(extract(epoch FROM high - low) / 2) * interval '1 second';
        IF pyqueue._cron_offset(middle, tz) = target THEN
            high := middle;
        ELSE
            low := middle;
        END IF;
    END LOOP;
    RETURN high;
END;
$$;

-- _cron_first_at(wall, tz) -> timestamptz: when a clock in tz first reads
-- wall: its first occurrence when a jump back repeats it, and the jump's
-- instant when a jump forward skips it (the first reading past it).
-- PostgreSQL reads a repeated wall time as its later occurrence and a skipped
-- one with the offset before the jump; offsets 3 hours before tell the earlier
-- occurrence, as no zone changes its offset twice within 3 hours.
CREATE OR REPLACE FUNCTION pyqueue._cron_first_at(wall timestamp, tz text) RETURNS timestamptz
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    read    timestamptz := wall AT TIME ZONE tz;
    earlier timestamptz;
BEGIN
    IF (read AT TIME ZONE tz) = wall THEN
        earlier := (wall - pyqueue._cron_offset(read - interval '3 hours', tz)) AT TIME ZONE 'UTC';
        IF earlier < read AND (earlier AT TIME ZONE tz) = wall THEN
            RETURN earlier;
        END IF;
        RETURN read;
    END IF;
    RETURN pyqueue._cron_transition((wall - pyqueue._cron_offset(read, tz)) AT TIME ZONE 'UTC', read, tz);
END;
$$;

-- _cron_check_zone(tz): raise unless PostgreSQL can read tz as a time zone.
-- Cheap, unlike a look-up in pg_timezone_names (which reads every zone file):
-- _cron_check makes that one, once, for a schedule's zone.
CREATE OR REPLACE FUNCTION pyqueue._cron_check_zone(tz text) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF tz IS NULL THEN
        RAISE EXCEPTION 'pyqueue: time zone must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    BEGIN
        PERFORM now() AT TIME ZONE tz;
    EXCEPTION WHEN invalid_parameter_value THEN
        RAISE EXCEPTION 'pyqueue: unknown time zone %', quote_literal(left(tz, 120))
            USING ERRCODE = 'invalid_parameter_value';
    END;
END;
$$;

-- _cron_next(expr, after, tz) -> timestamptz
-- The first instant strictly after `after` at which the cron expression fires,
-- reading it as wall-clock time in tz (a zone that _cron_check accepted; see
-- the top of this file for daylight-saving changes). NULL when the expression
-- can never fire (0 0 30 2 *), or, which no other expression comes near, does
-- not fire within 100 years. Raises 22023 for a bad expression, an unknown
-- zone, or an `after` that is NULL or infinite.
CREATE OR REPLACE FUNCTION pyqueue._cron_next(expr text, after timestamptz, tz text DEFAULT 'UTC')
RETURNS timestamptz
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    cron       record;
    local      timestamp;
    wall       timestamp;
    first_at   timestamptz;
    read       timestamptz;
    found      timestamptz;
    jump       timestamptz;
    jump_wall  timestamp;
    offset_now interval;
BEGIN
    SELECT * INTO cron FROM pyqueue._cron_parse(expr);
    PERFORM pyqueue._cron_check_zone(tz);
    IF after IS NULL OR NOT isfinite(after) THEN
        RAISE EXCEPTION 'pyqueue: after must be a finite time, got %', coalesce(after::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cron.never THEN
        RETURN NULL;
    END IF;
    local := after AT TIME ZONE tz;
    wall := pyqueue._cron_next_wall(cron.minutes, cron.hours, cron.days, cron.months, cron.weekdays,
                                    cron.day_and, date_trunc('minute', local) + interval '1 minute');

    IF cron.fixed_time THEN
        -- Wall times in calendar order, each at its first reading; one whose
        -- first reading is not after `after` is passed over (`after` is in the
        -- second pass of a repeated hour, and so is the wall time).
        LOOP
            IF wall IS NULL THEN
                RETURN NULL;
            END IF;
            first_at := pyqueue._cron_first_at(wall, tz);
            IF first_at > after THEN
                RETURN first_at;
            END IF;
            wall := pyqueue._cron_next_wall(cron.minutes, cron.hours, cron.days, cron.months,
                                            cron.weekdays, cron.day_and, wall + interval '1 minute');
        END LOOP;
    END IF;

    -- Every reading: the first allowed wall time past `after`'s, at its first
    -- instant after `after` (its second one when `after` is between the two); a
    -- wall time skipped by a jump forward moves the search past the jump.
    LOOP
        IF wall IS NULL THEN
            EXIT;
        END IF;
        read := wall AT TIME ZONE tz;
        IF (read AT TIME ZONE tz) = wall THEN
            first_at := pyqueue._cron_first_at(wall, tz);
            found := CASE WHEN first_at > after THEN first_at WHEN read > after THEN read END;
            EXIT WHEN found IS NOT NULL;
            wall := wall + interval '1 minute';
        ELSE
            jump := pyqueue._cron_first_at(wall, tz);
            wall := jump AT TIME ZONE tz;
        END IF;
        wall := pyqueue._cron_next_wall(cron.minutes, cron.hours, cron.days, cron.months, cron.weekdays,
                                        cron.day_and, wall);
    END LOOP;
    -- A jump back within 3 hours of `after` repeats wall times that `after`'s
    -- reading has passed: the first allowed one after the jump may come before
    -- the instant found.
    offset_now := pyqueue._cron_offset(after, tz);
    IF pyqueue._cron_offset(after + interval '3 hours', tz) < offset_now THEN
        jump := pyqueue._cron_transition(after, after + interval '3 hours', tz);
        jump_wall := pyqueue._cron_next_wall(cron.minutes, cron.hours, cron.days, cron.months,
                                             cron.weekdays, cron.day_and, jump AT TIME ZONE tz);
        IF jump_wall IS NOT NULL THEN
            read := (jump_wall - pyqueue._cron_offset(jump, tz)) AT TIME ZONE 'UTC';
            IF (read AT TIME ZONE tz) = jump_wall AND read > after AND (found IS NULL OR read < found) THEN
                found := read;
            END IF;
        END IF;
    END IF;
    RETURN found;
END;
$$;

-- _cron_check(expr, tz): raise 22023 unless expr is a cron expression that can
-- fire and tz is a zone in PostgreSQL's zone database (pg_timezone_names: its
-- names exactly, not abbreviations such as PST or POSIX rules such as UTC+3).
-- For a schedule's creation: the zone look-up reads every zone file.
CREATE OR REPLACE FUNCTION pyqueue._cron_check(expr text, tz text) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF (SELECT never FROM pyqueue._cron_parse(expr)) THEN
        RAISE EXCEPTION 'pyqueue: cron expression % never fires: no month it allows has a day it allows',
            quote_literal(left(expr, 120))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF tz IS NULL THEN
        RAISE EXCEPTION 'pyqueue: time zone must not be NULL'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names WHERE name = tz) THEN
        RAISE EXCEPTION 'pyqueue: unknown time zone %', quote_literal(left(tz, 120))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END;
$$;
