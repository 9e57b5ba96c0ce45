"""Cron schedules: the fields, macros and refusals Kubernetes has, and next times (with DST in a time zone)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from protos import cron

BERLIN = ZoneInfo("Europe/Berlin")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        pytest.param("*/5 * * * *", utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 5), id="step"),
        pytest.param("*/5 * * * *", utc(2026, 1, 1, 0, 4, 59), utc(2026, 1, 1, 0, 5), id="seconds-round-up"),
        pytest.param("0 * * * *", utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 1, 0), id="hourly-field"),
        pytest.param("15,45 9-17 * * *", utc(2026, 1, 1, 9, 20), utc(2026, 1, 1, 9, 45), id="list-and-range"),
        pytest.param("0 9-17/4 * * *", utc(2026, 1, 1, 10, 0), utc(2026, 1, 1, 13, 0), id="range-step"),
        pytest.param("0 20/2 * * *", utc(2026, 1, 1, 21, 0), utc(2026, 1, 1, 22, 0), id="start-step"),
        pytest.param("0 0 * * MON-FRI", utc(2026, 1, 2, 12, 0), utc(2026, 1, 5, 0, 0), id="weekday-names"),
        pytest.param("0 0 1 jan,jul *", utc(2026, 2, 1, 0, 0), utc(2026, 7, 1, 0, 0), id="month-names"),
        pytest.param("0 0 13 * 5", utc(2026, 1, 1, 0, 0), utc(2026, 1, 2, 0, 0), id="dom-or-dow"),
        pytest.param("0 0 ? * 0", utc(2026, 1, 1, 0, 0), utc(2026, 1, 4, 0, 0), id="question-mark-sunday"),
        pytest.param("0 0 29 2 *", utc(2026, 1, 1), utc(2028, 2, 29), id="leap-day"),
        pytest.param("@yearly", utc(2026, 5, 1), utc(2027, 1, 1), id="yearly"),
        pytest.param("@annually", utc(2026, 5, 1), utc(2027, 1, 1), id="annually"),
        pytest.param("@monthly", utc(2026, 5, 1), utc(2026, 6, 1), id="monthly"),
        pytest.param("@weekly", utc(2026, 1, 1), utc(2026, 1, 4), id="weekly-sunday"),
        pytest.param("@daily", utc(2026, 1, 1, 5), utc(2026, 1, 2), id="daily"),
        pytest.param("@midnight", utc(2026, 1, 1, 5), utc(2026, 1, 2), id="midnight"),
        pytest.param("@hourly", utc(2026, 1, 1, 5, 1), utc(2026, 1, 1, 6), id="hourly"),
        pytest.param("0 0 30 2 *", utc(2026, 1, 1), None, id="never"),
    ],
)
def test_next_time(schedule: str, after: datetime, expected: datetime | None) -> None:
    assert cron.parse(schedule).next_after(after) == expected


@pytest.mark.parametrize(
    "schedule",
    [
        pytest.param("", id="empty"),
        pytest.param("* * * *", id="four-fields"),
        pytest.param("* * * * * *", id="six-fields"),
        pytest.param("60 * * * *", id="minute-range"),
        pytest.param("* 24 * * *", id="hour-range"),
        pytest.param("* * 0 * *", id="day-zero"),
        pytest.param("* * * 13 *", id="month-range"),
        pytest.param("* * * * 7", id="weekday-seven"),
        pytest.param("*/0 * * * *", id="zero-step"),
        pytest.param("5-1 * * * *", id="backwards-range"),
        pytest.param("* * * FOO *", id="bad-name"),
        pytest.param("a * * * *", id="not-a-number"),
        pytest.param("@every 5m", id="every"),
        pytest.param("@fortnightly", id="unknown-macro"),
        pytest.param("CRON_TZ=UTC * * * * *", id="cron-tz"),
        pytest.param("TZ=UTC * * * * *", id="tz"),
    ],
)
def test_bad_schedules_are_refused(schedule: str) -> None:
    with pytest.raises(cron.ScheduleError):
        cron.parse(schedule)


def test_every_5_minutes_over_an_hour_is_12_times() -> None:
    times = list(cron.parse("*/5 * * * *").times_between(utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 1, 0)))
    assert len(times) == 12 and times[-1] == utc(2026, 1, 1, 1, 0)


def test_a_time_zone_moves_the_schedule() -> None:
    schedule = cron.parse("0 2 * * *", BERLIN)
    assert schedule.next_after(utc(2026, 1, 10)) == utc(2026, 1, 10, 1, 0)  # 02:00 CET
    assert schedule.next_after(utc(2026, 7, 9, 12)) == utc(2026, 7, 10, 0, 0)  # 02:00 CEST


def test_the_skipped_hour_in_spring_does_not_run() -> None:
    schedule = cron.parse("30 2 * * *", BERLIN)
    runs = list(schedule.times_between(utc(2026, 3, 28), utc(2026, 3, 31)))
    # 2026-03-29 02:30 does not exist in Berlin.
    assert [r.astimezone(BERLIN).day for r in runs] == [28, 30]


def test_the_repeated_hour_in_autumn_matches_at_both_instants() -> None:
    schedule = cron.parse("30 2 * * *", BERLIN)
    runs = list(schedule.times_between(utc(2026, 10, 24, 12), utc(2026, 10, 26, 12)))
    assert runs == [utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30), utc(2026, 10, 26, 1, 30)]


def test_every_20_minutes_across_the_autumn_change_keeps_its_pace() -> None:
    schedule = cron.parse("*/20 * * * *", BERLIN)
    runs = list(schedule.times_between(utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 2, 0)))
    assert len(runs) == 6  # every 20 minutes of real time, through both 02:xx hours


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        pytest.param("Europe/Berlin", True, id="iana"),
        pytest.param("Etc/UTC", True, id="etc-utc"),
        pytest.param("America/Argentina/Buenos_Aires", True, id="three-parts"),
        pytest.param("Mars/Olympus", False, id="unknown"),
        pytest.param("Local", False, id="local"),
        pytest.param("", False, id="empty"),
        pytest.param("../etc/passwd", False, id="path"),
        pytest.param("/usr/share/zoneinfo/UTC", False, id="absolute"),
    ],
)
def test_time_zone_names(name: str, ok: bool) -> None:
    assert (cron.zone_problem(name) is None) == ok
