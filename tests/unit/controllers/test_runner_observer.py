"""The controller manager tells its observer (the metrics) what runs and how each sync went."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sized

import pytest

from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.runner import ControllerManager
from controlplane.informer import CacheEvent, Informer
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore

pytestmark = pytest.mark.timeout(30)


class Flaky:
    """Fails its first sync, then succeeds."""

    kinds: tuple[str, ...] = ("Pod",)
    workers = 1
    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        self.queue = queue

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        return []

    def all_keys(self) -> Iterable[str]:
        return ["k"]

    async def sync(self, key: str) -> float | None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("first time")
        return None


class Recorder:
    def __init__(self) -> None:
        self.started: tuple[list[str], list[str]] | None = None
        self.stopped = 0
        self.syncs: list[tuple[str, bool]] = []

    def controllers_started(self, informers: Mapping[str, Informer], queues: Mapping[str, Sized]) -> None:
        self.started = (sorted(informers), sorted(queues))

    def controllers_stopped(self) -> None:
        self.stopped += 1

    def synced(self, controller: str, seconds: float, *, failed: bool) -> None:
        assert seconds >= 0
        self.syncs.append((controller, failed))


async def test_observer_sees_the_term_and_every_sync() -> None:
    recorder = Recorder()
    controller = Flaky()
    manager = ControllerManager(ObjectStore(MemoryStore()), [controller], observer=recorder)
    run = asyncio.create_task(manager.run())
    try:
        async with asyncio.timeout(10):
            while len(recorder.syncs) < 2:
                await asyncio.sleep(0.01)
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    assert recorder.started == (["Pod"], ["flaky"])
    assert recorder.syncs == [("flaky", True), ("flaky", False)]
    assert recorder.stopped == 1
