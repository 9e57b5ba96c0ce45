"""The informer's listeners and `refresh`: a listener added to a filled cache
gets it replayed (client-go's late event handler), a removed one hears nothing
more, and `refresh` catches a running cache whose watch lags up with the
store at once, without the watch applying a change twice or bringing a
deleted object back afterwards."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from controlplane.informer import CacheEvent, Informer, object_key
from controlplane.store.base import ListPage, WatchEvent
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import Change, ObjectStore
from protos.corral.v1 import pod_pb2
from protos.kinds import by_kind, meta
from tests.fakeclock import on_fake_clock

pytestmark = pytest.mark.timeout(30)
POD = by_kind("Pod")


class PausableStore(MemoryStore):
    """A store whose watches hold every event while paused (a watch lagging a busy store);
    counts the lists and watches it serves."""

    def __init__(self) -> None:
        super().__init__()
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.lists = 0
        self.watches = 0

    def pause(self) -> None:
        self.flowing.clear()

    def release(self) -> None:
        self.flowing.set()

    async def list(self, prefix: str, **kwargs: Any) -> ListPage:
        self.lists += 1
        return await super().list(prefix, **kwargs)

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchEvent, None]:
        self.watches += 1
        async for event in super().watch(prefix, start_revision=start_revision):
            await self.flowing.wait()
            yield event


def pod(name: str, version: int = 0) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    p.metadata.labels["v"] = str(version)
    p.spec.containers.add(name="main", image="busybox")
    return p


def versions(objs: Any) -> dict[str, str]:
    """Key → resourceVersion of some objects."""
    return {object_key(o): meta(o).resource_version for o in objs}


def summary(events: list[CacheEvent]) -> list[tuple[Change, str, str]]:
    return [(e.change, object_key(e.obj), meta(e.obj).resource_version) for e in events]


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[Informer]:
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 5)
        yield informer
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


async def relabel(objects: ObjectStore, name: str, version: int) -> pod_pb2.Pod:
    current = await objects.get(POD, "default", name)
    assert isinstance(current, pod_pb2.Pod)
    current.metadata.labels["v"] = str(version)
    updated = await objects.update(current)
    assert isinstance(updated, pod_pb2.Pod)
    return updated


async def remove(objects: ObjectStore, name: str) -> int:
    current = await objects.get(POD, "default", name)
    assert current is not None
    return await objects.delete(current)


# -- listeners ---------------------------------------------------------------------


async def test_a_listener_added_to_a_filled_cache_gets_it_replayed_as_added() -> None:
    objects = ObjectStore(MemoryStore())
    for i in range(3):
        await objects.create(pod(f"p{i}"))
    async with running(Informer(objects, POD)) as informer:
        late: list[CacheEvent] = []
        informer.add_listener(late.append)

        assert [(e.change, e.prev, e.revision) for e in late] == [(Change.ADDED, None, informer.revision)] * 3
        assert versions(e.obj for e in late) == versions(informer.items.values())
        assert sorted(object_key(e.obj) for e in late) == ["default/p0", "default/p1", "default/p2"]
        # Then every change, as any listener.
        created = await objects.create(pod("p3"))
        await until(lambda: len(late) == 4, "the new pod")
        assert summary(late[3:]) == [(Change.ADDED, "default/p3", meta(created).resource_version)]


async def test_a_listener_added_before_the_start_gets_nothing_replayed() -> None:
    objects = ObjectStore(MemoryStore())
    for i in range(3):
        await objects.create(pod(f"p{i}"))
    informer = Informer(objects, POD)
    early: list[CacheEvent] = []
    informer.add_listener(early.append)
    assert early == []
    async with running(informer):
        # The first list tells it of each pod once: no replay on top of it.
        assert sorted(object_key(e.obj) for e in early) == ["default/p0", "default/p1", "default/p2"]
        assert {e.change for e in early} == {Change.ADDED}


async def test_a_removed_listener_hears_nothing_more() -> None:
    objects = ObjectStore(MemoryStore())
    async with running(Informer(objects, POD)) as informer:
        kept: list[CacheEvent] = []
        dropped: list[CacheEvent] = []
        informer.add_listener(kept.append)
        informer.add_listener(dropped.append)
        assert list(informer.listeners) == [kept.append, dropped.append]
        await objects.create(pod("p0"))
        await until(lambda: len(kept) == 1 and len(dropped) == 1, "both listeners told")

        informer.remove_listener(dropped.append)
        informer.remove_listener(dropped.append)  # no longer listening: a no-op
        informer.remove_listener(lambda event: None)  # never listened: a no-op
        assert list(informer.listeners) == [kept.append]
        await objects.create(pod("p1"))
        await until(lambda: len(kept) == 2, "the listener kept told")

    assert [object_key(e.obj) for e in kept] == ["default/p0", "default/p1"]
    assert [object_key(e.obj) for e in dropped] == ["default/p0"]


# -- refresh -----------------------------------------------------------------------


@on_fake_clock
async def test_refresh_catches_a_lagging_watch_up_and_the_watch_repeats_nothing() -> None:
    store = PausableStore()
    objects = ObjectStore(store)
    for i in range(3):
        await objects.create(pod(f"p{i}"))
    async with running(Informer(objects, POD)) as informer:
        before = versions(informer.items.values())
        seen: list[CacheEvent] = []
        informer.add_listener(seen.append)
        seen.clear()  # the replay
        store.pause()
        # Written while the watch is held back: modified, deleted, created, created and deleted,
        # modified again (the last write, at the list's own revision).
        await relabel(objects, "p0", 1)
        await remove(objects, "p1")
        added = await objects.create(pod("p3"))
        await objects.create(pod("p4"))
        await remove(objects, "p4")
        modified = await relabel(objects, "p0", 2)
        await asyncio.sleep(0.05)
        assert versions(informer.items.values()) == before, "the watch is held back"
        assert seen == []

        await informer.refresh()

        listed, revision = await objects.list_all(POD)
        assert versions(informer.items.values()) == versions(listed)
        assert informer.revision == revision == int(meta(modified).resource_version)
        assert {key: (change, version) for change, key, version in summary(seen)} == {
            "default/p0": (Change.MODIFIED, meta(modified).resource_version),
            "default/p1": (Change.DELETED, before["default/p1"]),  # as last cached
            "default/p3": (Change.ADDED, meta(added).resource_version),
        }
        assert len(seen) == 3
        assert all(e.revision == revision for e in seen)
        modified_event = next(e for e in seen if e.change is Change.MODIFIED)
        assert modified_event.prev is not None and meta(modified_event.prev).resource_version == before["default/p0"]

        # The held-back events (all at or below the list's revision) now arrive: none applies.
        refreshed = list(seen)
        store.release()
        last = await objects.create(pod("p5"))
        await until(lambda: "default/p5" in informer.items, "the write after the refresh")
        assert seen[: len(refreshed)] == refreshed
        assert summary(seen[len(refreshed) :]) == [(Change.ADDED, "default/p5", meta(last).resource_version)]
        assert "default/p1" not in informer.items and "default/p4" not in informer.items, "nothing resurrected"
        listed, revision = await objects.list_all(POD)
        assert versions(informer.items.values()) == versions(listed)
        assert informer.revision == revision


async def test_refresh_of_an_up_to_date_cache_tells_nothing() -> None:
    store = PausableStore()
    objects = ObjectStore(store)
    await objects.create(pod("p0"))
    async with running(Informer(objects, POD)) as informer:
        created = await objects.create(pod("p1"))
        await until(lambda: "default/p1" in informer.items, "the watch")
        seen: list[CacheEvent] = []
        informer.add_listener(seen.append)
        seen.clear()
        lists = store.lists

        await informer.refresh()

        assert store.lists == lists + 1  # it did look
        assert seen == []
        assert informer.revision == int(meta(created).resource_version)


@on_fake_clock
async def test_refresh_waits_for_the_first_list() -> None:
    store = PausableStore()
    objects = ObjectStore(store)
    await objects.create(pod("p0"))
    informer = Informer(objects, POD)
    refresh = asyncio.create_task(informer.refresh())
    await asyncio.sleep(0.05)
    assert not refresh.done() and store.lists == 0
    async with running(informer):
        await asyncio.wait_for(refresh, 5)
    assert list(informer.items) == ["default/p0"]
