"""A store watch whose reader falls too far behind is ended with
`WatchOverflowError` (what waited is dropped, memory stays bounded), and an
informer that fell behind lists again and ends equal to the store."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from controlplane.informer import Informer
from controlplane.store import backlog
from controlplane.store.backlog import WatchBacklog
from controlplane.store.errors import WatchOverflowError
from controlplane.store.memory import MemoryStore
from controlplane.store.objects import ObjectStore
from protos.corral.v1 import pod_pb2
from protos.kinds import by_kind

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        pytest.param([1] * 4, (4, 4), id="events"),
        pytest.param([40, 40, 40], (3, 120), id="bytes"),
    ],
)
async def test_past_the_bound_what_waited_is_dropped_and_the_watch_ends(
    sizes: list[int], expected: tuple[int, int]
) -> None:
    queue = WatchBacklog(max_events=3, max_bytes=100)
    for i, size in enumerate(sizes):
        queue.put_nowait(i, size)
    queue.put_nowait("later", 1)  # ignored: the watch has ended
    assert queue.overflowed and queue.qsize() == 1
    error = await queue.get()
    assert isinstance(error, WatchOverflowError)
    assert (error.events, error.size) == expected
    assert "list again" in str(error)


async def test_a_reader_that_keeps_up_gets_every_item() -> None:
    queue = WatchBacklog(max_events=2, max_bytes=100)
    for i in range(10):
        queue.put_nowait(i, 50)
        assert await queue.get() == i
    assert not queue.overflowed


async def test_a_memory_store_watch_not_read_ends_with_overflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backlog, "MAX_WATCH_BACKLOG_EVENTS", 5)
    store = MemoryStore()
    watch = store.watch("/k/", start_revision=1)
    first = asyncio.ensure_future(anext(watch))
    await store.create("/k/0", b"0")
    assert (await first).key == "/k/0"
    for i in range(1, 10):  # the reader reads nothing meanwhile
        await store.create(f"/k/{i}", b"x")
    with pytest.raises(WatchOverflowError):
        await anext(watch)


def _pod(name: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name, p.metadata.namespace = name, "default"
    p.spec.containers.add(name="main", image="busybox:1")
    return p


async def test_an_informer_that_fell_behind_lists_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backlog, "MAX_WATCH_BACKLOG_EVENTS", 5)
    objects = ObjectStore(MemoryStore())
    informer = Informer(objects, by_kind("Pod"), relist_backoff=0.01)
    running = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 5)
        await objects.create(_pod("first"))
        async with asyncio.timeout(5):
            while "default/first" not in informer.items:
                await asyncio.sleep(0.01)
        with capture_logs() as logs:
            for i in range(20):  # a burst with no turn for the informer: it falls 20 events behind
                await objects.create(_pod(f"p{i}"))
            async with asyncio.timeout(5):
                while len(informer.items) < 21:
                    await asyncio.sleep(0.01)
        assert any(e["event"] == "informer_relist" and e.get("reason") == "fell behind" for e in logs)
        assert sorted(informer.items) == sorted(["default/first", *(f"default/p{i}" for i in range(20))])
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
