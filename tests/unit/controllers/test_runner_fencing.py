"""The controller manager stops every controller when the leader's fence
refuses a write (ObjectApi's FencedError), and keeps retrying any other
failure; the elector then ends the term as fenced, not as a failing leader."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest
import structlog

from controlplane.apiserver.errors import ConflictError, FencedError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.runner import ControllerManager
from controlplane.informer import CacheEvent, Informer
from controlplane.leader.elector import Elector, Term
from controlplane.store.base import Fence
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import pod_pb2
from protos.kinds import by_kind

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
        pytest.param(FencedError("write to /k fenced"), id="direct"),
        pytest.param(ExceptionGroup("binds", [FencedError("write to /k fenced")]), id="in-a-task-group"),
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
    flaky = Scripted("flaky", [ConflictError("conflict on /k"), RuntimeError("boom")])
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


KEY = "/corral/leader"


class Writing(Scripted):
    """A controller whose sync creates a pod through the ObjectApi it is given."""

    def __init__(self, api: ObjectApi) -> None:
        super().__init__("writer", [])
        self.api = api

    async def sync(self, key: str) -> float | None:
        self.calls += 1
        pod = pod_pb2.Pod()
        pod.metadata.name, pod.metadata.namespace = "p", "default"
        pod.spec.containers.add(name="main", image="busybox:1")
        await self.api.create(pod)
        return None


async def test_a_write_the_fence_refuses_ends_the_term_as_fenced() -> None:
    """The whole path: the store refuses a write fenced with another term, ObjectApi raises its
    FencedError, the manager stops, and the elector steps down as fenced (it campaigns again at
    once), not as a failing leader."""
    store = MemoryStore()
    terms: list[Term] = []
    writers: list[Writing] = []

    async def lead(term: Term) -> None:
        terms.append(term)
        if len(terms) > 1:
            await asyncio.Event().wait()
        stale = Fence(term.fence.key, term.fence.revision + 1)  # as if another replica had been elected since
        writer = Writing(ObjectApi(ObjectStore(store.fenced(stale))))
        writers.append(writer)
        await ControllerManager(ObjectStore(store), [writer]).run()

    elector = Elector(store, key=KEY, holder="a:1:10.0.0.1:7443", ttl=5, retry=0.05)
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(elector.run(lead))
        try:
            async with asyncio.timeout(10):
                while len(terms) < 2:
                    await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    lost = next(entry for entry in logs if entry["event"] == "leadership_lost")
    assert lost["reason"].startswith("fenced: write to ")
    assert not any(entry["event"] == "leader_failed" for entry in logs)
    assert writers[0].calls == 1  # not retried
    assert await ObjectStore(store).get(by_kind("Pod"), "default", "p") is None  # nothing written
