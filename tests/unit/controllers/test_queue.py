"""The controllers' work queue: dedupe, one worker per key, coalescing, back-off."""

import asyncio

import pytest

from controlplane.controllers import queue as queue_module
from controlplane.controllers.queue import WorkQueue
from tests.fakeclock import on_fake_clock


async def test_a_key_is_queued_once_and_processed_by_one_worker() -> None:
    q = WorkQueue()
    q.add("a")
    q.add("a")
    assert len(q) == 1
    key = await q.get()
    q.add("a")  # changed while being processed: not handed to a second worker
    assert len(q) == 0
    q.done(key)
    assert len(q) == 1


@on_fake_clock
async def test_changes_right_after_a_sync_are_coalesced() -> None:
    q = WorkQueue(coalesce=0.2)
    q.add("a")
    q.done(await q.get())
    q.add("a")
    assert len(q) == 0  # waits out the window
    async with asyncio.timeout(2):
        assert await q.get() == "a"


async def test_retry_backs_off_exponentially() -> None:
    q = WorkQueue(base_delay=0.01, max_delay=0.04)
    assert [q.retry("k") for _ in range(4)] == [0.01, 0.02, 0.04, 0.04]
    q.forget("k")
    assert q.retry("k") == 0.01
    q.close()


@on_fake_clock
async def test_finish_times_are_pruned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_module, "PRUNE_ABOVE", 10)
    q = WorkQueue(coalesce=0.01)
    for i in range(30):
        q.add(f"k{i}")
        q.done(await q.get())
    await asyncio.sleep(0.02)
    q.add("last")
    q.done(await q.get())
    assert len(q._finished_at) <= 11
