"""Timestamps and RFC 3339 text (protos/times.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from protos import times

T = datetime(2026, 12, 7, 18, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        pytest.param(Timestamp(), None, id="unset"),
        pytest.param(Timestamp(seconds=int(T.timestamp())), T, id="seconds"),
        pytest.param(
            Timestamp(seconds=0, nanos=1000), datetime(1970, 1, 1, microsecond=1, tzinfo=UTC), id="nanos-only"
        ),
    ],
)
def test_as_datetime(ts: Timestamp, expected: datetime | None) -> None:
    assert times.as_datetime(ts) == expected


def test_stamp_round_trips() -> None:
    ts = Timestamp()
    times.stamp(ts, T)
    assert times.as_datetime(ts) == T


@pytest.mark.parametrize(
    ("at", "text", "deadline"),
    [
        pytest.param(T, "2026-12-07T18:30:00Z", "2026-12-07T18:30:00Z", id="whole"),
        pytest.param(T + timedelta(microseconds=1), "2026-12-07T18:30:00Z", "2026-12-07T18:30:01Z", id="fraction"),
        pytest.param(
            T.astimezone(timezone(timedelta(hours=2))),
            "2026-12-07T18:30:00Z",
            "2026-12-07T18:30:00Z",
            id="other-offset-in-utc",
        ),
    ],
)
def test_format(at: datetime, text: str, deadline: str) -> None:
    assert times.format_time(at) == text
    assert times.format_deadline(at) == deadline


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-12-07T18:30:00Z", T, id="zulu"),
        pytest.param("2026-12-07T20:30:00+02:00", T, id="offset"),
        pytest.param("2026-12-07T18:30:00", None, id="naive-refused"),
        pytest.param("tomorrow", None, id="not-a-time"),
        pytest.param("", None, id="empty"),
    ],
)
def test_parse_time(text: str, expected: datetime | None) -> None:
    assert times.parse_time(text) == expected


def test_format_deadline_parses_back_never_early() -> None:
    at = T + timedelta(milliseconds=300)
    back = times.parse_time(times.format_deadline(at))
    assert back is not None and back >= at


@pytest.mark.parametrize(
    ("args", "latest", "earliest"),
    [
        pytest.param((), None, None, id="none"),
        pytest.param((None, None), None, None, id="all-unset"),
        pytest.param((T, None, T + timedelta(1)), T + timedelta(1), T, id="mixed"),
    ],
)
def test_latest_and_earliest(
    args: tuple[datetime | None, ...], latest: datetime | None, earliest: datetime | None
) -> None:
    assert times.latest(*args) == latest
    assert times.earliest(*args) == earliest
