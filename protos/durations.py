"""The one duration format corral reads, and canary pauses. Pure.

Every duration corral reads (a canary pause's `duration`, `corral token create
--ttl`, `corral server --node-cert-ttl`, `--timeout`) is parsed by
`parse_seconds`: either a plain non-negative number of seconds (`90`, `1.5`,
`0`) or one or more `<number><unit>` parts, summed, with the units `ms`, `s`,
`m`, `h` and `d` (`500ms`, `90s`, `1m30s`, `1.5h`, `7d`). Blanks around the
text are ignored; the total is at most `MAX_SECONDS`. Where only whole seconds
make sense (TTLs, canary pauses) `parse_whole_seconds` also refuses a total
with a fraction of a second (`1.5m` is 90 s and fine, `500ms` is not).

A pause lasts `duration`: an integer number of seconds, or a string in the
format above. A pause without a duration lasts until `corral rollout
promote`. The API server validates durations with `duration_problem`; the
controller reads them with `pause_seconds`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

from protos.corral.v1 import meta_pb2, workloads_pb2

# The longest duration in seconds that is turned into a date or a timer (2^31 - 1, some 68 years).
MAX_SECONDS: Final = 2**31 - 1

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN = re.compile(_NUMBER, re.ASCII)
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d)", re.ASCII)
_UNIT_SECONDS: Final = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
EXAMPLES: Final = '"90", "90s", "1m30s", "500ms", "1.5h" or "7d"'


class DurationError(ValueError):
    """A text that is no duration, or one out of range. `problem` says what is wrong
    (`must be …`); the message adds the text."""

    def __init__(self, problem: str, text: str) -> None:
        super().__init__(f'{problem}, got "{text}"')
        self.problem = problem


def _exact_seconds(text: str) -> Decimal:
    value = text.strip()
    if _PLAIN.fullmatch(value):
        total = Decimal(value)
    else:
        parts = [(m.group(1), m.group(2)) for m in _PART.finditer(value)]
        if not parts or "".join(n + u for n, u in parts) != value:
            raise DurationError(f"must be a number of seconds or a duration such as {EXAMPLES}", text)
        total = sum((Decimal(n) * _UNIT_SECONDS[u] for n, u in parts), Decimal(0))
    if total > MAX_SECONDS:
        raise DurationError(f"must be at most {MAX_SECONDS} seconds", text)
    return total


def parse_seconds(text: str) -> float:
    """The seconds in `text` (see the module docstring); DurationError if it is none."""
    return float(_exact_seconds(text))


def parse_whole_seconds(text: str) -> int:
    """`parse_seconds`, refusing a total with a fraction of a second."""
    total = _exact_seconds(text)
    if total != total.to_integral_value():
        raise DurationError("must be a whole number of seconds", text)
    return int(total)


def seconds(value: meta_pb2.IntOrString) -> int | None:
    """The duration in seconds, or None if it is negative, malformed or over `MAX_SECONDS`."""
    return None if duration_problem(value) is not None else _seconds(value)


def _seconds(value: meta_pb2.IntOrString) -> int:
    return value.int_val if value.WhichOneof("value") == "int_val" else parse_whole_seconds(value.str_val)


def duration_problem(value: meta_pb2.IntOrString) -> str | None:
    """Why `value` is no pause duration (None: it is one)."""
    if value.WhichOneof("value") == "int_val":
        if value.int_val < 0:
            return f"must be >= 0 seconds, got {value.int_val}"
        if value.int_val > MAX_SECONDS:
            return f"must be at most {MAX_SECONDS} seconds, got {value.int_val}"
        return None
    try:
        parse_whole_seconds(value.str_val)
    except DurationError as e:
        return str(e)
    return None


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
