"""Lists of what an async stream has ready, for streams written to the network.

A gRPC stream write costs a turn of the event loop and a message's overhead
on both ends; under a burst (a thousand pods created, bound and started in a
couple of seconds) a watch writing one event per message falls behind by
seconds. `ready_batches` reads the source in a task of its own and hands out,
each time, every item already read (at least one, at most ``max_items``), so
a quiet stream still sends each event at once and a busy one sends them in
few messages.

Without a `Bound` the reader holds the source back once ``max_items`` are
waiting. With one it keeps reading, so the source (a store watch, whose own
queue has no bound) never piles up behind a consumer that stopped, and counts
what waits: past the bound's items or bytes it drops them all, stops reading
and closes the source, and the consumer gets `BufferOverflow` next (Kubernetes'
watch cache ends an unresponsive watcher the same way).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Bound", "BufferOverflow", "ready_batches"]

T = TypeVar("T")


@dataclass(frozen=True)
class _Item(Generic[T]):
    value: T


@dataclass(frozen=True)
class _Failed:
    error: Exception


class _End:
    pass


@dataclass(frozen=True)
class Bound(Generic[T]):
    """At most ``items`` items and ``bytes`` bytes (as ``size`` counts them) read and not yet taken."""

    items: int
    bytes: int
    size: Callable[[T], int]


class BufferOverflow(Exception):
    """The consumer fell so far behind that what waited passed the bound."""

    def __init__(self, items: int, size: int) -> None:
        self.items = items
        self.bytes = size
        super().__init__(f"{items} items ({size} bytes) waited for the consumer")


class _Buffer(Generic[T]):
    """What the reader put and the consumer has not taken; no bound of its own."""

    def __init__(self) -> None:
        self.entries: deque[tuple[_Item[T] | _Failed | _End, int]] = deque()
        self.items = 0
        self.bytes = 0
        self.changed = asyncio.Event()

    def put(self, entry: _Item[T] | _Failed | _End, size: int = 0) -> None:
        self.entries.append((entry, size))
        self.items += isinstance(entry, _Item)
        self.bytes += size
        self.changed.set()

    def fail(self, error: Exception) -> None:
        """Drop what waits, and end with ``error``."""
        self.entries.clear()
        self.items = self.bytes = 0
        self.put(_Failed(error))

    def empty(self) -> bool:
        return not self.entries

    async def get(self) -> _Item[T] | _Failed | _End:
        while not self.entries:
            self.changed.clear()
            await self.changed.wait()
        return self.get_nowait()

    def get_nowait(self) -> _Item[T] | _Failed | _End:
        entry, size = self.entries.popleft()
        self.items -= isinstance(entry, _Item)
        self.bytes -= size
        return entry


async def ready_batches(
    source: AsyncIterator[T],
    max_items: int,
    bound: Bound[T] | None = None,
    *,
    on_overflow: Callable[[BufferOverflow], None] | None = None,
) -> AsyncIterator[list[T]]:
    """The items of ``source`` in order, as lists of what is ready; the
    source's error is raised after the items read before it; past ``bound``,
    `BufferOverflow` instead of what waited (told to ``on_overflow`` at once:
    the consumer may not come for it for a long time)."""
    if max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    # Without a bound, bounded by max_items: a slow reader holds the source back.
    queue: asyncio.Queue[_Item[T] | _Failed | _End] | _Buffer[T] = (
        asyncio.Queue(maxsize=max_items) if bound is None else _Buffer()
    )

    async def pump() -> None:
        try:
            async for value in source:
                if isinstance(queue, _Buffer):
                    assert bound is not None
                    queue.put(_Item(value), bound.size(value))
                    if queue.items > bound.items or queue.bytes > bound.bytes:
                        overflow = BufferOverflow(queue.items, queue.bytes)
                        queue.fail(overflow)
                        if on_overflow is not None:
                            on_overflow(overflow)
                        return
                else:
                    await queue.put(_Item(value))
        except Exception as exc:
            await _put(queue, _Failed(exc))
        else:
            await _put(queue, _End())
        finally:
            # Cancelled while the queue was full (a slow reader), the loop above left the
            # source suspended: close it now (a store watch), not whenever it is collected.
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                await aclose()

    reader = asyncio.create_task(pump(), name="ready-batches")
    try:
        while True:
            entry = await queue.get()
            batch: list[T] = []
            while isinstance(entry, _Item):
                batch.append(entry.value)
                if len(batch) >= max_items or queue.empty():
                    break
                entry = queue.get_nowait()
            if batch:
                yield batch
            if isinstance(entry, _Failed):
                raise entry.error
            if isinstance(entry, _End):
                return
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _put(queue: asyncio.Queue[_Item[T] | _Failed | _End] | _Buffer[T], entry: _Failed | _End) -> None:
    if isinstance(queue, _Buffer):
        queue.put(entry)
    else:
        await queue.put(entry)
