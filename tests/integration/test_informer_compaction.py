"""An informer whose watch resumes from a revision that was compacted away
(etcd's auto-compaction ran between its list and its watch) re-lists once and
carries on: it neither crashes nor spins, and its cache ends equal to the
store. Against the memory store and a real etcd of each release line."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import pytest

from controlplane.informer import CacheEvent, Informer
from controlplane.store.base import ListPage, Store, WatchEvent
from controlplane.store.objects import Change, ObjectStore
from protos.corral.v1 import pod_pb2
from protos.kinds import by_kind, meta

pytestmark = pytest.mark.timeout(60)
POD = by_kind("Pod")
WAIT = 10.0


class CompactingBeforeFirstWatch:
    """A store (delegating to ``inner``) that, before the first watch starts, runs ``meanwhile``
    (writes) and compacts up to the current revision: the watch's start revision is gone.
    Counts lists and watches."""

    def __init__(self, inner: Store, meanwhile: Callable[[], Awaitable[None]]) -> None:
        self.inner = inner
        self.meanwhile: Callable[[], Awaitable[None]] | None = meanwhile
        self.lists = 0
        self.watches = 0
        self.compacted_at = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def list(self, prefix: str, **kwargs: Any) -> ListPage:
        if kwargs.get("start_after") is None:
            self.lists += 1
        return await self.inner.list(prefix, **kwargs)

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchEvent, None]:
        self.watches += 1
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
            self.compacted_at = await self.inner.current_revision()
            assert start_revision < self.compacted_at, "the writes must leave the watch's start compacted"
            await self.inner.compact(self.compacted_at)
        async for event in self.inner.watch(prefix, start_revision=start_revision):
            yield event


def pod(name: str, version: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    p.metadata.labels["v"] = version
    p.spec.containers.add(name="main", image="busybox")
    return p


async def test_a_watch_resuming_from_a_compacted_revision_relists_once(store: Store, key_prefix: str) -> None:
    objects = ObjectStore(store, key_prefix)
    await objects.create(pod("before", "1"))

    async def meanwhile() -> None:  # two revisions past the list: its revision + 1 is compacted away
        created = await objects.create(pod("during", "1"))
        await objects.delete(await objects.get(POD, "default", "before") or created)

    compacting = CompactingBeforeFirstWatch(store, meanwhile)
    informer = Informer(ObjectStore(compacting, key_prefix), POD, relist_backoff=0.01)
    seen: list[CacheEvent] = []
    informer.add_listener(seen.append)
    task = asyncio.create_task(informer.run())
    try:
        async with asyncio.timeout(WAIT):
            while set(informer.items) != {"default/during"}:
                assert not task.done(), f"the informer ended: {task.exception()!r}"
                await asyncio.sleep(0.01)
        # Then it follows the store again from where the re-list left it.
        await objects.create(pod("after", "1"))
        async with asyncio.timeout(WAIT):
            while "default/after" not in informer.items:
                assert not task.done(), f"the informer ended: {task.exception()!r}"
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert compacting.compacted_at > 0
    # One list, a compacted watch, one re-list, one watch that carries on: no spinning.
    assert (compacting.lists, compacting.watches) == (2, 2)
    changes = [(e.change, meta(e.obj).name) for e in seen]
    assert changes == [
        (Change.ADDED, "before"),
        (Change.DELETED, "before"),  # the re-list's difference, replayed
        (Change.ADDED, "during"),
        (Change.ADDED, "after"),
    ]
    revisions = [e.revision for e in seen]
    assert revisions == sorted(revisions)
