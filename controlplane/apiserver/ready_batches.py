"""Lists of what an async stream has ready, for streams written to the network.

A gRPC stream write costs a turn of the event loop and a message's overhead
on both ends; under a burst (a thousand pods created, bound and started in a
couple of seconds) a watch writing one event per message falls behind by
seconds. `ready_batches` reads the source in a task of its own and hands out,
each time, every item already read (at least one, at most ``max_items``), so
a quiet stream still sends each event at once and a busy one sends them in
few messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["ready_batches"]

T = TypeVar("T")


@dataclass(frozen=True)
class _Item(Generic[T]):
    value: T


@dataclass(frozen=True)
class _Failed:
    error: Exception


class _End:
    pass


async def ready_batches(source: AsyncIterator[T], max_items: int) -> AsyncIterator[list[T]]:
    """The items of ``source`` in order, as lists of what is ready; the
    source's error is raised after the items read before it."""
    if max_items < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    # Bounded: a slow reader holds the source back instead of buffering without end.
    queue: asyncio.Queue[_Item[T] | _Failed | _End] = asyncio.Queue(maxsize=max_items)

    async def pump() -> None:
        try:
            async for value in source:
                await queue.put(_Item(value))
        except Exception as exc:
            await queue.put(_Failed(exc))
        else:
            await queue.put(_End())
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
