"""Controllers run by a ControllerManager over a MemoryStore, for the tests that watch them act."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.runner import Controller, ControllerManager
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore

WAIT = 5.0


async def wait_for(check: Callable[[], Awaitable[object]], what: str, timeout: float = WAIT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.asynccontextmanager
async def running(make: Callable[[ObjectApi], Sequence[Controller]]) -> AsyncIterator[ObjectApi]:
    """An API over a fresh store, with the controllers `make` builds on it running until exit."""
    objects = ObjectStore(MemoryStore())
    api = ObjectApi(objects)
    manager = ControllerManager(objects, list(make(api)))
    task = asyncio.create_task(manager.run())
    try:
        yield api
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for queue in manager.queues.values():
            queue.close()
