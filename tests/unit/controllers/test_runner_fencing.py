"""The controller manager stops every controller when the leader's fence
refuses a write, and keeps retrying any other failure."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
import structlog

from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.runner import ControllerManager
from controlplane.informer import CacheEvent, Informer
from controlplane.store.errors import ConflictError, FencedError
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore

pytestmark = pytest.mark.timeout(30)


class Scripted:
    """A controller whose syncs fail as told, counting its calls."""

    kinds: tuple[str, ...] = ()
    workers = 1

    def __init__(self, name: str, errors: list[BaseException]) -> None:
        self.name = name
        self.errors = errors
        self.calls = 0
        self.called = asyncio.Event()

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        self.queue = queue

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        return []

    def all_keys(self) -> Iterable[str]:
        return ["k"]

    async def sync(self, key: str) -> float | None:
        self.calls += 1
        self.called.set()
        if self.errors:
            raise self.errors.pop(0)
        return None


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(FencedError("/k", "/corral/leader", 2, 7), id="direct"),
        pytest.param(ExceptionGroup("binds", [FencedError("/k", "/corral/leader", 2, 7)]), id="in-a-task-group"),
    ],
)
async def test_a_fenced_write_stops_every_controller(error: BaseException) -> None:
    fenced = Scripted("fenced", [error])
    bystander = Scripted("bystander", [])
    manager = ControllerManager(ObjectStore(MemoryStore()), [fenced, bystander])

    with structlog.testing.capture_logs() as logs, pytest.raises(BaseExceptionGroup) as info:
        await asyncio.wait_for(manager.run(), 10)

    assert info.value.subgroup(FencedError) is not None
    assert fenced.calls == 1  # not retried
    assert any(entry["event"] == "controller_fenced" and entry["controller"] == "fenced" for entry in logs)


async def test_other_errors_are_retried() -> None:
    flaky = Scripted("flaky", [ConflictError("/k", 1, 2), RuntimeError("boom")])
    manager = ControllerManager(ObjectStore(MemoryStore()), [flaky])
    run = asyncio.create_task(manager.run())
    try:
        async with asyncio.timeout(10):
            while flaky.calls < 3:
                await asyncio.sleep(0.01)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)

    assert flaky.calls == 3 and not flaky.errors
