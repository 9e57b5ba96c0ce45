"""The informer across lost watches, compaction and a lagging store: it
re-lists and carries on, never hands a listener an older resourceVersion of an
object after a newer one, never applies one change twice, and ends equal to
the store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from controlplane.informer import CacheEvent, Informer
from controlplane.store.base import ListPage, WatchEvent
from controlplane.store.errors import UnavailableError
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import Change, ObjectStore
from protos.corral.v1 import pod_pb2
from protos.kinds import by_kind, meta
from tests.fakeclock import on_fake_clock

pytestmark = pytest.mark.timeout(30)
POD = by_kind("Pod")


class FlakyStore(MemoryStore):
    """Cuts every watch after ``cut_after`` events; lists at an old revision while ``lagging``;
    replays the last delivered event at the start of each new watch (as a reconnect might)."""

    def __init__(self, cut_after: int) -> None:
        super().__init__()
        self.cut_after = cut_after
        self.lagging_revision: int | None = None
        self.cuts = 0
        self._last: WatchEvent | None = None

    async def list(self, prefix: str, **kwargs: Any) -> ListPage:
        if self.lagging_revision is not None and kwargs.get("revision") is None:
            kwargs["revision"] = self.lagging_revision
            self.lagging_revision = None
        return await super().list(prefix, **kwargs)

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchEvent, None]:
        if self._last is not None and self._last.key.startswith(prefix):
            yield self._last  # a duplicate of what the previous watch already delivered
        delivered = 0
        async for event in super().watch(prefix, start_revision=start_revision):
            yield event
            self._last = event
            delivered += 1
            if delivered >= self.cut_after:
                self.cuts += 1
                raise UnavailableError("connection lost (test)")


def pod(name: str, version: int) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    p.metadata.labels["v"] = str(version)
    p.spec.containers.add(name="main", image="busybox")
    return p


@on_fake_clock
async def test_cuts_compaction_and_a_lagging_list_neither_reorder_nor_repeat() -> None:
    store = FlakyStore(cut_after=3)
    objects = ObjectStore(store)
    informer = Informer(objects, POD, relist_backoff=0.01)
    seen: list[CacheEvent] = []
    informer.add_listener(seen.append)
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 5)
        for round_ in range(6):
            for i in range(4):
                existing = informer.items.get(f"default/p{i}")
                if existing is None or round_ % 3 == 0:
                    with contextlib.suppress(Exception):
                        await objects.create(pod(f"p{i}", round_))
                else:
                    current = await objects.get(POD, "default", f"p{i}")
                    assert isinstance(current, pod_pb2.Pod)
                    updated = pod_pb2.Pod()
                    updated.CopyFrom(current)
                    updated.metadata.labels["v"] = str(round_)
                    await objects.update(updated)
            if round_ == 2:
                doomed = await objects.get(POD, "default", "p0")
                assert doomed is not None
                await objects.delete(doomed)
            if round_ == 3:
                # Everything so far compacted away while the watch is down: the next watch must re-list.
                await store.compact(await store.current_revision())
            if round_ == 4:
                store.lagging_revision = 1
            await asyncio.sleep(0.05)
        final = {f"default/{meta(o).name}": o for o in (await objects.list_all(POD))[0]}
        async with asyncio.timeout(10):
            while {k: meta(v).resource_version for k, v in informer.items.items()} != {
                k: meta(v).resource_version for k, v in final.items()
            }:
                await asyncio.sleep(0.02)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert store.cuts >= 3
    last: dict[str, int] = {}
    applied: set[tuple[str, int, Change]] = set()
    for event in seen:
        key = f"{meta(event.obj).namespace}/{meta(event.obj).name}"
        version = int(meta(event.obj).resource_version)
        if event.change is not Change.DELETED:
            assert version > last.get(key, 0), f"{key}: resourceVersion {version} after {last.get(key)}"
            last[key] = version
        assert (key, version, event.change) not in applied, f"{key} {version} {event.change} applied twice"
        applied.add((key, version, event.change))
    # The revisions the listeners saw never went back either.
    revisions = [event.revision for event in seen]
    assert revisions == sorted(revisions)


async def test_every_object_of_one_transaction_reaches_the_cache() -> None:
    """A transaction writes several keys at one revision (the scheduler binds 64 pods at once):
    each is a change of its own, none taken for a repeat of the other."""
    store = MemoryStore()
    objects = ObjectStore(store)
    informer = Informer(objects, POD, relist_backoff=0.01)
    seen: list[CacheEvent] = []
    informer.add_listener(seen.append)
    for i in range(5):
        await objects.create(pod(f"p{i}", 0))
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 5)
        listed = [o for o in (await objects.list_all(POD))[0] if isinstance(o, pod_pb2.Pod)]
        for p in listed:
            p.spec.node_name = "n1"
        revision = (await objects.update_many(listed))[0]
        async with asyncio.timeout(5):
            while sum(1 for o in informer.items.values() if isinstance(o, pod_pb2.Pod) and o.spec.node_name) < 5:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    bound = [e for e in seen if e.change is Change.MODIFIED]
    assert len(bound) == 5 and {e.revision for e in bound} == {int(meta(revision).resource_version)}
