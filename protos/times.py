"""Protobuf timestamps as aware datetimes, and back."""

from __future__ import annotations

from datetime import UTC, datetime

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
