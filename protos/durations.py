"""Canary pause durations. Pure.

A pause lasts `duration`: a whole number of seconds (`60`) or a string of
digits and one unit, `s`, `m` or `h` (`"60s"`, `"5m"`, `"1h"`). A pause
without a duration lasts until `corral rollout promote`. The API server
validates durations with `duration_problem`; the controller reads them with
`pause_seconds`. Times in messages and annotations are RFC 3339
(`format_time`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from protos.corral.v1 import meta_pb2, workloads_pb2

# The longest duration in seconds that is turned into a date or a timer (2^31 - 1, some 68 years).
MAX_SECONDS: Final = 2**31 - 1

_DURATION = re.compile(r"^(\d+)(s|m|h)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def seconds(value: meta_pb2.IntOrString) -> int | None:
    """The duration in seconds, or None if it is negative, malformed or over `MAX_SECONDS`."""
    kind = value.WhichOneof("value")
    found: int | None = None
    if kind == "int_val":
        found = value.int_val
    elif kind == "str_val":
        m = _DURATION.match(value.str_val)
        found = int(m.group(1)) * _UNIT_SECONDS[m.group(2)] if m else None
    return found if found is not None and 0 <= found <= MAX_SECONDS else None


def duration_problem(value: meta_pb2.IntOrString) -> str | None:
    """Why `value` is no pause duration (None: it is one)."""
    if seconds(value) is not None:
        return None
    if value.WhichOneof("value") == "int_val":
        return f"must be >= 0 seconds, got {value.int_val}"
    if _DURATION.match(value.str_val):
        return f'must be at most {MAX_SECONDS} seconds, got "{value.str_val}"'
    return f'must be a number of seconds or a duration such as "60s", "5m" or "1h", got "{value.str_val}"'


def is_set(pause: workloads_pb2.CanaryPause) -> bool:
    return pause.HasField("duration") and pause.duration.WhichOneof("value") is not None


def pause_seconds(pause: workloads_pb2.CanaryPause) -> int | None:
    """How long the pause lasts; None: until promoted (also for a malformed
    duration, which validation refuses: waiting for a person is the safe reading)."""
    return seconds(pause.duration) if is_set(pause) else None


def describe(pause: workloads_pb2.CanaryPause) -> str:
    """`for 60s` or `until promoted`, for messages."""
    length = pause_seconds(pause)
    return "until promoted" if length is None else f"for {length}s"


def format_time(at: datetime) -> str:
    """RFC 3339 in UTC, whole seconds rounded up (a deadline never comes early)."""
    at = at.astimezone(UTC)
    if at.microsecond:
        at = at.replace(microsecond=0) + timedelta(seconds=1)
    return at.isoformat().replace("+00:00", "Z")
