"""A work queue of object keys, as client-go's: a key is queued at most once,
is processed by one worker at a time, and failed keys come back with
exponential back-off. Delays use the event loop clock.

A key changed right after its sync waits out a coalescing window; `pace` widens
one key's window (a controller whose sync of that key costs more, e.g. counting
a ReplicaSet's 10,000 pods, bounds the share of the loop that key takes)."""

from __future__ import annotations

import asyncio
from collections import deque

# Finish times older than the coalescing window are forgotten once there are this many.
PRUNE_ABOVE = 4096


class WorkQueue:
    def __init__(self, *, base_delay: float = 0.05, max_delay: float = 30.0, coalesce: float = 0.0) -> None:
        self._queue: deque[str] = deque()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._dirty: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._finished_at: dict[str, float] = {}
        # Keys whose coalescing window is wider than `coalesce` (see `pace`).
        self._windows: dict[str, float] = {}
        self._ready = asyncio.Event()
        self.base_delay = base_delay
        self.max_delay = max_delay
        # A key that changed while it was being processed comes back after this
        # long, so a burst of changes to one key costs one more sync, not one each.
        self.coalesce = coalesce

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if key in self._active:
            self._dirty.add(key)
            return
        if self.coalesce and key in self._finished_at:
            wait = self._finished_at[key] + self.window(key) - asyncio.get_running_loop().time()
            if wait > 0:
                self.add_after(key, wait)
                return
            del self._finished_at[key]
        if key not in self._queued:
            self._queued.add(key)
            self._queue.append(key)
            self._ready.set()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        existing = self._timers.get(key)
        when = loop.time() + delay
        if existing is not None and existing.when() <= when:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self._finished_at.pop(key, None)
        self.add(key)

    async def get(self) -> str:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: str) -> None:
        """The worker finished `key`; if it changed meanwhile, queue it again."""
        self._active.discard(key)
        if self.coalesce:
            now = asyncio.get_running_loop().time()
            self._finished_at[key] = now
            if len(self._finished_at) > PRUNE_ABOVE:
                self._finished_at = {k: t for k, t in self._finished_at.items() if t + self.window(k) > now}
        if key in self._dirty:
            self._dirty.discard(key)
            self.add_after(key, self.window(key))

    def pace(self, key: str, window: float) -> None:
        """From now on, changes to `key` right after its sync wait `window` seconds (never less
        than `coalesce`; 0 gives the key back the common window)."""
        if window > self.coalesce:
            self._windows[key] = window
        else:
            self._windows.pop(key, None)

    def window(self, key: str) -> float:
        """The coalescing window of `key`."""
        return self._windows.get(key, self.coalesce)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def retry(self, key: str) -> float:
        """Requeue a failed key with exponential back-off; returns the delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay: float = min(self.max_delay, self.base_delay * 2.0**failures)
        self.add_after(key, delay)
        return delay

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
