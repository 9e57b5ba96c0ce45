"""Expectations: what a controller has asked for but its cache has not yet shown.

Kubernetes' `UIDTrackingControllerExpectations`, per controller key: a count of
pod creations not yet observed and the set of pods whose deletion was asked
for but not yet observed. Until both are met (or `timeout` seconds have passed
since they were set, in case an event was lost) the controller must not
create or delete again for that key: its cache would make it count wrong and
overshoot.

Raise expectations *before* the writes (the watch event may arrive before the
write returns); lower them for writes that definitely failed. A write whose
outcome is unknown (a temporary error) keeps its expectation until it is
observed or times out. The clock is a parameter (seconds, monotonic).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

DEFAULT_TIMEOUT = 30.0


@dataclass
class _Record:
    creates: int = 0
    deletes: set[str] = field(default_factory=set)
    since: float = 0.0


class Expectations:
    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self._records: dict[str, _Record] = {}

    def expect(self, key: str, *, creates: int = 0, deletes: Iterable[str] = ()) -> None:
        """Record writes about to be made for `key` (adds to what is pending)."""
        record = self._records.get(key)
        if record is None or self._expired(record):
            record = self._records[key] = _Record()
        record.creates += creates
        record.deletes.update(deletes)
        record.since = self.clock()

    def creation_observed(self, key: str) -> bool:
        """Lower the pending creations of `key`; True when this met its last expectation."""
        record = self._records.get(key)
        if record is None or record.creates <= 0:
            return False
        record.creates -= 1
        return record.creates == 0 and not record.deletes

    def deletion_observed(self, key: str, pod_key: str) -> bool:
        """The pod's deletion was seen; True when this met the last expectation of `key`."""
        record = self._records.get(key)
        if record is None or pod_key not in record.deletes:
            return False
        record.deletes.discard(pod_key)
        return record.creates <= 0 and not record.deletes

    def creations_failed(self, key: str, count: int) -> None:
        """`count` creations did not happen: expect them no more."""
        record = self._records.get(key)
        if record is not None:
            record.creates = max(0, record.creates - count)

    def deletion_failed(self, key: str, pod_key: str) -> None:
        self.deletion_observed(key, pod_key)

    def satisfied(self, key: str) -> bool:
        record = self._records.get(key)
        if record is None:
            return True
        if (record.creates <= 0 and not record.deletes) or self._expired(record):
            del self._records[key]
            return True
        return False

    def remaining(self, key: str) -> float | None:
        """Seconds until the pending expectations of `key` expire (None if none)."""
        record = self._records.get(key)
        if record is None:
            return None
        return max(0.0, record.since + self.timeout - self.clock())

    def pending(self, key: str) -> tuple[int, frozenset[str]]:
        record = self._records.get(key)
        if record is None:
            return 0, frozenset()
        return record.creates, frozenset(record.deletes)

    def forget(self, key: str) -> None:
        self._records.pop(key, None)

    def _expired(self, record: _Record) -> bool:
        return self.clock() - record.since >= self.timeout
