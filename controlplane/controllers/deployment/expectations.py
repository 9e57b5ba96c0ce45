"""Write expectations: don't decide on a cache that has not seen our own writes.

After a sync writes ReplicaSets (or its Deployment), the next sync of that
Deployment waits until each informer has caught up with the revision of the
write (an informer's `revision` is the last store revision it has applied,
and our write is an event on its prefix), and until deleted objects are gone
from it. Deciding from an older cache could, for instance, scale a new
ReplicaSet up on a stale view of an old one and overshoot maxSurge. After
`timeout` seconds without catching up (a lost event), it gives up waiting.
The clock is a parameter (seconds, monotonic).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from controlplane.informer import Informer
from protos.kinds import meta

DEFAULT_TIMEOUT = 30.0


@dataclass
class _Pending:
    since: float
    # Kind -> the highest revision written.
    revisions: dict[str, int] = field(default_factory=dict)
    # (kind, "ns/name", uid) of deleted objects.
    gone: set[tuple[str, str, str]] = field(default_factory=set)


class WriteExpectations:
    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self._pending: dict[str, _Pending] = {}

    def _record(self, key: str) -> _Pending:
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending(since=self.clock())
        pending.since = self.clock()
        return pending

    def wrote(self, key: str, kind: str, resource_version: str) -> None:
        if not resource_version.isdigit():
            return
        revisions = self._record(key).revisions
        revisions[kind] = max(revisions.get(kind, 0), int(resource_version))

    def deleted(self, key: str, kind: str, object_key: str, uid: str) -> None:
        self._record(key).gone.add((kind, object_key, uid))

    def satisfied(self, key: str, informers: Mapping[str, Informer]) -> bool:
        pending = self._pending.get(key)
        if pending is None:
            return True
        if self.clock() - pending.since >= self.timeout or self._seen(pending, informers):
            del self._pending[key]
            return True
        return False

    @staticmethod
    def _seen(pending: _Pending, informers: Mapping[str, Informer]) -> bool:
        for kind, revision in pending.revisions.items():
            if informers[kind].revision < revision:
                return False
        for kind, object_key, uid in pending.gone:
            obj = informers[kind].items.get(object_key)
            if obj is not None and meta(obj).uid == uid:
                return False
        return True

    def remaining(self, key: str) -> float | None:
        pending = self._pending.get(key)
        if pending is None:
            return None
        return max(0.0, pending.since + self.timeout - self.clock())

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)
