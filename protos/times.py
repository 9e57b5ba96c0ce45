"""Protobuf timestamps as aware datetimes, and back; RFC 3339 text for annotations and messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp


def as_datetime(ts: Timestamp) -> datetime | None:
    """The UTC time in `ts`, or None when it is unset."""
    if not ts.seconds and not ts.nanos:
        return None
    return ts.ToDatetime(tzinfo=UTC)


def stamp(ts: Timestamp, when: datetime) -> None:
    ts.FromDatetime(when)


def latest(*times: datetime | None) -> datetime | None:
    """The latest of the times that are set."""
    known = [t for t in times if t is not None]
    return max(known) if known else None


def earliest(*times: datetime | None) -> datetime | None:
    """The earliest of the times that are set."""
    known = [t for t in times if t is not None]
    return min(known) if known else None


def format_time(at: datetime) -> str:
    """RFC 3339 in UTC, whole seconds (fractions dropped): `2026-12-07T18:30:00Z`."""
    return at.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def format_deadline(at: datetime) -> str:
    """RFC 3339 in UTC, whole seconds rounded up (a deadline never comes early)."""
    at = at.astimezone(UTC)
    if at.microsecond:
        at = at.replace(microsecond=0) + timedelta(seconds=1)
    return format_time(at)


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time with an offset (`Z` or `+hh:mm`); None for anything else, naive times included."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None
