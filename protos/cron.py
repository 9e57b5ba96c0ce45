"""Cron schedules as a CronJob's `spec.schedule` means them. Pure code: no I/O.

The syntax is the standard one Kubernetes accepts (robfig/cron's
`ParseStandard`): five fields — minute (0-59), hour (0-23), day of month
(1-31), month (1-12 or JAN-DEC) and day of week (0-6 or SUN-SAT, 0 is Sunday)
— each `*`, `?` (as `*`), a value, a range `a-b`, a step `*/n`, `a-b/n` or
`a/n` (from a to the end), or a comma list of those; names are
case-insensitive. The macros `@yearly` (`@annually`), `@monthly`, `@weekly`,
`@daily` (`@midnight`) and `@hourly` stand for their five fields. As
Kubernetes, `@every` and a `TZ=`/`CRON_TZ=` prefix are refused (the time zone
is the CronJob's `spec.timeZone`).

When both day fields are restricted (neither starts with `*` or `?`), a day
matches when either matches (Vixie cron); otherwise both must.

Times are wall-clock times in the schedule's zone: `next_after(after)` is the
first instant after `after` whose local time matches. Around daylight saving
changes this is what the Kubernetes library does: a local time that does not
exist (the hour skipped in spring) never matches, and one that happens twice
(the hour repeated in autumn) matches at both instants.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day of month", 1, 31, {}),
    _Field("month", 1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    _Field("day of week", 0, 6, {d: i for i, d in enumerate(_DAYS)}),
)
# How far ahead a schedule is searched before it is taken to never fire (robfig/cron: five years).
SEARCH_YEARS = 5
# A time zone name as Kubernetes accepts it: each path element of these characters, 1-14 long.
_ZONE_ELEMENT = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")


class ScheduleError(ValueError):
    """A schedule that does not parse; the message says why."""


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    # A day field that starts with * or ? (then both day fields must match).
    any_day: bool
    zone: tzinfo = UTC

    def matches_day(self, at: datetime) -> bool:
        day = at.day in self.days
        weekday = (at.isoweekday() % 7) in self.weekdays
        return day and weekday if self.any_day else day or weekday

    def next_wall(self, start: datetime) -> datetime | None:
        """The first matching local (naive) time at or after `start` (whole minutes), or None."""
        t = start.replace(second=0, microsecond=0)
        if start.second or start.microsecond:
            t += timedelta(minutes=1)
        limit = t.replace(tzinfo=None) + timedelta(days=366 * SEARCH_YEARS)
        while t <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self.matches_day(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        return None

    def next_after(self, after: datetime) -> datetime | None:
        """The first instant strictly after `after` (aware) whose local time matches, in UTC; None: never."""
        local = after.astimezone(self.zone)
        if not _ambiguous(local):
            wall: datetime | None = local.replace(tzinfo=None, second=0, microsecond=0) + timedelta(minutes=1)
            while wall is not None:
                wall = self.next_wall(wall)
                if wall is None:
                    return None
                found = [i for i in _instants(wall, self.zone) if i > after]
                if found:
                    return min(found)
                wall += timedelta(minutes=1)
            return None
        return self._next_near_fold(after, local)

    def _next_near_fold(self, after: datetime, local: datetime) -> datetime | None:
        """`after` lies in a repeated hour: walls before its own may still come later (at their second instant)."""
        wall: datetime | None = local.replace(tzinfo=None, second=0, microsecond=0) - timedelta(hours=3)
        best: datetime | None = None
        while wall is not None:
            wall = self.next_wall(wall)
            if wall is None:
                break
            if best is not None and wall > best.astimezone(self.zone).replace(tzinfo=None) + timedelta(hours=3):
                break
            for instant in _instants(wall, self.zone):
                if instant > after and (best is None or instant < best):
                    best = instant
            wall += timedelta(minutes=1)
        return best

    def times_between(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Every matching instant in (after, until], in order."""
        at = self.next_after(after)
        while at is not None and at <= until:
            yield at
            at = self.next_after(at)


def _ambiguous(local: datetime) -> bool:
    return local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset()


def _instants(wall: datetime, zone: tzinfo) -> list[datetime]:
    """The UTC instants whose local time in `zone` is `wall`: none in a skipped hour, two in a repeated one."""
    found: list[datetime] = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall and instant not in found:
            found.append(instant)
    return found


def parse(text: str, zone: tzinfo = UTC) -> Schedule:
    """The schedule `text` means, in `zone`; ScheduleError says what is wrong."""
    text = text.strip()
    if not text:
        raise ScheduleError("empty spec string")
    if "TZ" in text:
        raise ScheduleError("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
    if text.startswith("@"):
        if text.split()[0].lower() == "@every":
            raise ScheduleError("@every is not supported: use five cron fields (such as */5 * * * *)")
        expanded = MACROS.get(text.lower())
        if expanded is None:
            raise ScheduleError(f'unrecognized descriptor: "{text}" (known: {", ".join(MACROS)})')
        text = expanded
    parts = text.split()
    if len(parts) != len(_FIELDS):
        raise ScheduleError(f"expected 5 fields (minute hour day-of-month month day-of-week), found {len(parts)}")
    minutes, hours, days, months, weekdays = (
        frozenset(_parse_field(part, field)) for part, field in zip(parts, _FIELDS, strict=True)
    )
    any_day = parts[2][0] in "*?" or parts[4][0] in "*?"
    return Schedule(minutes, hours, days, months, weekdays, any_day=any_day, zone=zone)


def _parse_field(text: str, field: _Field) -> set[int]:
    result: set[int] = set()
    for item in text.split(","):
        result |= _parse_item(item, field)
    return result


def _parse_item(item: str, field: _Field) -> set[int]:
    where = f"{field.name} {item!r}"
    span, slash, step_text = item.partition("/")
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise ScheduleError(f"{where}: the step must be a positive number")
        step = int(step_text)
    else:
        step = 1
    if span in ("*", "?"):
        low, high = field.low, field.high
    else:
        first, dash, last = span.partition("-")
        low = _value(first, field, where)
        high = _value(last, field, where) if dash else (field.high if slash else low)
    if low > high:
        raise ScheduleError(f"{where}: the range starts after it ends ({low} > {high})")
    return set(range(low, high + 1, step))


def _value(text: str, field: _Field, where: str) -> int:
    if text.upper() in field.names:
        return field.names[text.upper()]
    if not text.isdigit():
        raise ScheduleError(f"{where}: {text!r} is not a number" + (" or a name" if field.names else ""))
    value = int(text)
    if not field.low <= value <= field.high:
        raise ScheduleError(f"{where}: {value} is out of range {field.low}-{field.high}")
    return value


def zone_problem(name: str) -> str | None:
    """Why `name` is not a valid spec.timeZone (an IANA name, as Kubernetes checks it), or None."""
    if not name:
        return "must be unset or a non-empty time zone name"
    if name == "Local" or not all(_ZONE_ELEMENT.match(part) for part in name.split("/")):
        return f'unknown time zone "{name}" (an IANA name such as "Europe/Berlin" or "Etc/UTC")'
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return f'unknown time zone "{name}" (an IANA name such as "Europe/Berlin" or "Etc/UTC")'
    return None


def zone(name: str | None) -> tzinfo:
    """The zone a CronJob's schedule runs in: its timeZone, else UTC (the control plane's clock).
    ScheduleError when this machine's time zone database does not know it."""
    if not name:
        return UTC
    problem = zone_problem(name)
    if problem is not None:
        raise ScheduleError(problem)
    return ZoneInfo(name)
