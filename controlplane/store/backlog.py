"""What a store watch holds for its reader, bounded.

A watch's events are pushed to it as the store changes (by the writer of the
memory store, by etcd's watch stream); a reader that stops reading would let
them pile up without end. `WatchBacklog` holds at most ``max_events`` events
and ``max_bytes`` bytes of values: past either it drops what it holds and
ends the watch with `WatchOverflowError`, which readers treat as a
compaction (list again, watch from the list's revision), as Kubernetes' watch
cache ends a watcher that does not keep up.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from controlplane.store.errors import WatchOverflowError

MAX_WATCH_BACKLOG_EVENTS = 10_000
MAX_WATCH_BACKLOG_BYTES = 64 * 1024 * 1024


class WatchBacklog:
    """A queue of one watch's items (events, errors, None for the end), ended past its bound."""

    def __init__(self, *, max_events: int | None = None, max_bytes: int | None = None) -> None:
        self.max_events = MAX_WATCH_BACKLOG_EVENTS if max_events is None else max_events
        self.max_bytes = MAX_WATCH_BACKLOG_BYTES if max_bytes is None else max_bytes
        self._items: deque[tuple[Any, int]] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self.overflowed = False

    def qsize(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Any, size: int = 0) -> None:
        """Add ``item`` (``size`` bytes); past the bound, end the watch instead. Nothing after that."""
        if self.overflowed:
            return
        self._items.append((item, size))
        self._bytes += size
        if len(self._items) > self.max_events or self._bytes > self.max_bytes:
            overflow = WatchOverflowError(len(self._items), self._bytes)
            self._items.clear()
            self._bytes = 0
            self._items.append((overflow, 0))
            self.overflowed = True
        self._ready.set()

    async def put(self, item: Any) -> None:
        """`put_nowait`, for callers that await their callback (aetcd's watcher)."""
        self.put_nowait(item, _size(item))

    async def get(self) -> Any:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item, size = self._items.popleft()
        self._bytes -= size
        return item


def _size(raw: Any) -> int:
    """The bytes an etcd watch event holds (its value and previous value); 0 for anything else."""
    kv, prev = getattr(raw, "kv", None), getattr(raw, "prev_kv", None)
    return len(getattr(kv, "value", b"") or b"") + len(getattr(prev, "value", b"") or b"")
