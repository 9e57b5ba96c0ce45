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


@on_fake_clock
async def test_a_paced_key_waits_out_its_own_window_and_others_the_common_one() -> None:
    loop = asyncio.get_running_loop()
    q = WorkQueue(coalesce=0.1)
    q.pace("slow", 0.5)
    for key in ("slow", "fast"):
        q.add(key)
        q.done(await q.get())
    started = loop.time()
    q.add("slow")
    q.add("fast")
    assert await q.get() == "fast"
    assert loop.time() - started == pytest.approx(0.1)
    q.done("fast")
    assert await q.get() == "slow"
    assert loop.time() - started == pytest.approx(0.5)


@on_fake_clock
async def test_pacing_a_key_at_zero_gives_it_back_the_common_window() -> None:
    loop = asyncio.get_running_loop()
    q = WorkQueue(coalesce=0.1)
    q.pace("a", 0.5)
    q.pace("a", 0.0)
    assert q.window("a") == 0.1
    q.add("a")
    q.done(await q.get())
    started = loop.time()
    q.add("a")
    assert await q.get() == "a"
    assert loop.time() - started == pytest.approx(0.1)


@on_fake_clock
async def test_a_paced_key_changed_during_its_sync_comes_back_after_its_window() -> None:
    loop = asyncio.get_running_loop()
    q = WorkQueue(coalesce=0.1)
    q.pace("a", 0.5)
    q.add("a")
    key = await q.get()
    q.add("a")  # changed while being synced
    started = loop.time()
    q.done(key)
    assert await q.get() == "a"
    assert loop.time() - started == pytest.approx(0.5)


@on_fake_clock
async def test_pruning_keeps_the_finish_time_of_a_paced_key_inside_its_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_module, "PRUNE_ABOVE", 3)
    loop = asyncio.get_running_loop()
    q = WorkQueue(coalesce=0.01)
    q.pace("slow", 1.0)
    q.add("slow")
    q.done(await q.get())
    await asyncio.sleep(0.05)
    for i in range(5):
        q.add(f"k{i}")
        q.done(await q.get())
    started = loop.time()
    q.add("slow")
    assert await q.get() == "slow"
    assert loop.time() - started == pytest.approx(0.95)
