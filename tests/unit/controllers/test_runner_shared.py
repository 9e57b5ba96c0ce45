"""The controller manager on shared informers (a leader's controllers on the
serving replica's caches): it runs no second informer of a shared kind,
catches the shared one up with the store before the first sync, builds its
controllers' indexes complete from the filled cache, and takes everything it
hung on the shared informers off them when its term ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any

import pytest

from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.runner import ControllerManager
from controlplane.informer import CacheEvent, Informer, object_key
from controlplane.store.base import ListPage, WatchEvent
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import Change, ObjectStore
from protos.corral.v1 import node_pb2, pod_pb2
from protos.kinds import by_kind
from tests.fakeclock import on_fake_clock

pytestmark = pytest.mark.timeout(30)
POD, NODE = by_kind("Pod"), by_kind("Node")


class PausableStore(MemoryStore):
    """Watches hold their events while paused (a lagging watch); lists and watches counted by prefix."""

    def __init__(self) -> None:
        super().__init__()
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.lists: dict[str, int] = {}
        self.watches: dict[str, int] = {}

    async def list(self, prefix: str, **kwargs: Any) -> ListPage:
        self.lists[prefix] = self.lists.get(prefix, 0) + 1
        return await super().list(prefix, **kwargs)

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchEvent, None]:
        self.watches[prefix] = self.watches.get(prefix, 0) + 1
        async for event in super().watch(prefix, start_revision=start_revision):
            await self.flowing.wait()
            yield event


class Indexing:
    """A controller of pods that keeps its own index of them (a listener added in `bind`)
    and records what the cache held at each sync."""

    kinds: tuple[str, ...] = ("Pod", "Node")
    workers = 1

    def __init__(self, name: str = "indexing") -> None:
        self.name = name
        self.index: set[str] = set()
        self.syncs: list[tuple[str, set[str]]] = []
        self.synced = asyncio.Event()

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        self.pods = informers["Pod"]
        self.pods.add_listener(self._index)

    def _index(self, event: CacheEvent) -> None:
        if event.change is Change.DELETED:
            self.index.discard(object_key(event.obj))
        else:
            self.index.add(object_key(event.obj))

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        return [object_key(event.obj)] if kind == "Pod" else []

    def all_keys(self) -> Iterable[str]:
        return ["all"]

    async def sync(self, key: str) -> float | None:
        self.syncs.append((key, set(self.pods.items)))
        self.synced.set()
        return None


def pod(name: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    p.spec.containers.add(name="main", image="busybox")
    return p


@contextlib.asynccontextmanager
async def running(task_of: Any) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(task_of)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Any, what: str) -> None:
    try:
        async with asyncio.timeout(5):
            while not check():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@on_fake_clock
async def test_a_shared_informer_is_used_caught_up_before_the_first_sync_and_left_clean() -> None:
    store = PausableStore()
    objects = ObjectStore(store)
    for i in range(3):
        await objects.create(pod(f"p{i}"))
    n1 = node_pb2.Node()
    n1.metadata.name = "n1"
    await objects.create(n1)
    shared = Informer(objects, POD)
    serving: list[CacheEvent] = []
    shared.add_listener(serving.append)  # the serving replica's own (an assignment index)
    pod_prefix = objects.prefix_for(POD)
    async with running(shared.run()):
        await asyncio.wait_for(shared.synced.wait(), 5)
        controller = Indexing()
        manager = ControllerManager(objects, [controller], shared={"Pod": shared})
        assert manager.informers["Pod"] is shared
        assert manager.informers["Node"] is not shared
        # Built in bind from the filled cache: complete before anything runs.
        assert controller.index == {"default/p0", "default/p1", "default/p2"}
        assert len(shared.listeners) == 3  # the serving one, the index, the queue's

        # Written while the shared informer's watch lags: its cache does not have it.
        store.flowing.clear()
        await objects.create(pod("late"))
        await asyncio.sleep(0.05)
        assert "default/late" not in shared.items

        async with running(manager.run()):
            await asyncio.wait_for(controller.synced.wait(), 5)
            _, first_cache = controller.syncs[0]
            assert "default/late" in first_cache, "the first sync saw a cache caught up with the store"
            assert "default/late" in controller.index
            assert manager.informers["Node"].synced.is_set()
            # One watch and no second list loop of pods: the shared informer's list, and its refresh.
            assert store.watches[pod_prefix] == 1
            assert store.lists[pod_prefix] == 2
            store.flowing.set()

        assert list(shared.listeners) == [serving.append]
        # The term is over: the shared informer goes on, telling only its own listener.
        told = len(serving)
        index = set(controller.index)
        syncs = len(controller.syncs)
        await objects.create(pod("after"))
        await until(lambda: "default/after" in shared.items, "the shared informer going on")
        assert object_key(serving[-1].obj) == "default/after" and len(serving) == told + 1
        assert controller.index == index
        await asyncio.sleep(0.2)  # more than the queue's coalescing: a queued key would have been synced
        assert len(controller.syncs) == syncs


async def test_a_new_term_on_the_same_shared_informer_starts_clean() -> None:
    """Terms come and go on one shared informer: each adds its listeners and takes them off again."""
    objects = ObjectStore(MemoryStore())
    await objects.create(pod("p0"))
    shared = Informer(objects, POD)
    async with running(shared.run()):
        await asyncio.wait_for(shared.synced.wait(), 5)
        for term in range(3):
            controller = Indexing(f"term-{term}")
            manager = ControllerManager(objects, [controller], shared={"Pod": shared})
            assert len(shared.listeners) == 2
            async with running(manager.run()):
                await asyncio.wait_for(controller.synced.wait(), 5)
                await objects.create(pod(f"t{term}"))
                await until(lambda c=controller, t=term: f"default/t{t}" in c.index, "the term's index told")
            assert list(shared.listeners) == []
