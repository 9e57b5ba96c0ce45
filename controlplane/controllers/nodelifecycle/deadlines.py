"""The heartbeat deadlines of the nodes that look healthy, kept in one heap.

A healthy node's plan does not change while it keeps renewing its Lease: the
only thing to do is to look again when its grace period would run out. The
controller arms that deadline here instead of queueing the node again; when
deadlines fall due (`pop_due`), the ones whose Lease was renewed meanwhile are
armed again at their new deadline — a lookup and a heap push, no sync — and
only the others get a full sync.

Arming a node again leaves its older entry in the heap; it is dropped when it
reaches the top (each node has at most one live deadline).
"""

from __future__ import annotations

import heapq
from datetime import datetime


class Deadlines:
    def __init__(self) -> None:
        self._at: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, str]] = []

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, key: object) -> bool:
        return key in self._at

    def arm(self, key: str, at: datetime) -> None:
        """Look at `key` again at `at` (replacing its earlier deadline, if any)."""
        if self._at.get(key) == at:
            return
        self._at[key] = at
        heapq.heappush(self._heap, (at, key))

    def disarm(self, key: str) -> None:
        self._at.pop(key, None)

    def next_at(self) -> datetime | None:
        """The earliest live deadline, or None."""
        heap = self._heap
        while heap and self._at.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: datetime) -> list[str]:
        """The keys whose deadline is `now` or earlier, earliest first; disarmed."""
        due: list[str] = []
        while (head := self.next_at()) is not None and head <= now:
            _, key = heapq.heappop(self._heap)
            del self._at[key]
            due.append(key)
        return due
