"""Wall-clock time for the control plane's components (each takes `now` as a
parameter so tests pass their own)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def utcnow_seconds() -> datetime:
    """Now, to the second, as Kubernetes timestamps are written."""
    return datetime.now(UTC).replace(microsecond=0)
