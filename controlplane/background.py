"""The control plane's background loops, in one TaskGroup owned by the task that starts the server."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class Background:
    """Loops that run until the server stops (informers, route hub, revocations, leadership, etcd supervisor).

    A TaskGroup owned by the task that enters it: a loop that fails is logged and cancels that task,
    so the server stops loudly (leaving raises the loop's error) instead of running on without it.
    `stop(task)` stops one loop where its owner wants (before what it reads closes); leaving cancels the rest.
    """

    def __init__(self) -> None:
        self._group = asyncio.TaskGroup()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Background:
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await self._group.__aexit__(et, exc, tb)

    def start(self, loop: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = self._group.create_task(loop, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("background_task_failed", task=task.get_name(), error=repr(error), exc_info=error)

    @staticmethod
    async def stop(task: asyncio.Task[None]) -> None:
        """Cancel one loop and wait for it (its error, if it failed, is the group's to raise)."""
        task.cancel()
        await asyncio.wait([task])
