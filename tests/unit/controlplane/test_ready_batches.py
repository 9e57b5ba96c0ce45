"""`ready_batches`: an async stream as lists of what is ready, in order, capped,
with the source's error after its items and the reader stopped with the consumer."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest

from controlplane.apiserver.ready_batches import Bound, BufferOverflow, ready_batches

pytestmark = pytest.mark.timeout(30)


async def burst(n: int) -> AsyncIterator[int]:
    """``n`` items, all ready at once (nothing awaited between them)."""
    for i in range(n):
        yield i


async def collect(batches: AsyncIterator[list[int]]) -> list[list[int]]:
    async with asyncio.timeout(5):
        return [batch async for batch in batches]


async def consume(batches: AsyncIterator[list[int]], into: list[list[int]], then: asyncio.Event) -> None:
    """Append each list to ``into`` and set ``then`` after each."""
    async with asyncio.timeout(5):
        async for batch in batches:
            into.append(batch)
            then.set()


def readers() -> list[asyncio.Task[None]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "ready-batches" and not t.done()]


async def test_items_come_out_in_order_and_complete() -> None:
    async def trickle() -> AsyncIterator[int]:
        for i in range(25):
            if i % 3 == 0:
                await asyncio.sleep(0)  # some items ready together, some alone
            yield i

    batches = await collect(ready_batches(trickle(), 4))
    assert [i for b in batches for i in b] == list(range(25))
    assert all(1 <= len(b) <= 4 for b in batches)


async def test_a_burst_already_available_is_one_list() -> None:
    # The reader task takes all ten (and the end) before the consumer runs again.
    assert await collect(ready_batches(burst(10), 100)) == [list(range(10))]


async def test_max_items_caps_a_list() -> None:
    batches = await collect(ready_batches(burst(10), 4))
    # Each list as full as the cap allows: the burst is ready, only the cap splits it.
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_max_items_one_is_one_item_per_list() -> None:
    assert await collect(ready_batches(burst(3), 1)) == [[0], [1], [2]]


async def test_an_item_arriving_later_comes_in_its_own_list() -> None:
    later = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        yield 0
        yield 1
        await later.wait()
        yield 2

    batches: list[list[int]] = []
    # The first list comes without waiting for the source to go on (else: a timeout).
    await consume(ready_batches(source(), 100), batches, then=later)
    assert batches == [[0, 1], [2]]


async def test_a_source_error_comes_after_the_items_read_before_it() -> None:
    later = asyncio.Event()

    async def failing() -> AsyncIterator[int]:
        yield 0
        yield 1
        await later.wait()
        yield 2
        raise RuntimeError("source broke")

    batches: list[list[int]] = []
    with pytest.raises(RuntimeError, match="source broke"):
        await consume(ready_batches(failing(), 100), batches, then=later)
    assert batches == [[0, 1], [2]]
    assert not readers()


async def test_a_source_failing_at_once_yields_no_empty_list() -> None:
    async def failing() -> AsyncIterator[int]:
        raise RuntimeError("no items")
        yield 0  # pragma: no cover - makes this an async generator

    batches: list[list[int]] = []
    with pytest.raises(RuntimeError, match="no items"):
        await consume(ready_batches(failing(), 10), batches, then=asyncio.Event())
    assert batches == []


async def test_closing_the_consumer_cancels_the_reader_and_closes_the_source() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            yield 0
            await asyncio.Event().wait()  # a watch with nothing more to say
            yield 1  # pragma: no cover
        finally:
            closed.set()

    batches = ready_batches(source(), 10)
    assert await anext(batches) == [0]
    [reader] = readers()
    await batches.aclose()
    assert reader.cancelled()
    assert closed.is_set()  # at once, not left to the garbage collector


async def test_closing_the_consumer_closes_a_source_held_back_by_a_full_queue() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[int]:
        try:
            for i in itertools.count():
                yield i
        finally:
            closed.set()

    batches = ready_batches(endless(), 2)
    assert await anext(batches) == [0, 1]
    [reader] = readers()  # now waiting to put the next item
    await batches.aclose()
    assert reader.cancelled()
    assert closed.is_set()


@pytest.mark.parametrize("max_items", [0, -1])
async def test_max_items_below_one_is_refused(max_items: int) -> None:
    with pytest.raises(ValueError, match="max_items"):
        await anext(ready_batches(burst(3), max_items))
    assert not readers()


# -- with a bound: a consumer that stops is cut off, the source never held back ----------


def _sized(item: int) -> int:
    return item


@pytest.mark.parametrize(
    ("bound", "expected"),
    [
        pytest.param(Bound(5, 10**9, _sized), (6, sum(range(1, 7))), id="items"),
        pytest.param(Bound(10**6, 100, _sized), (14, sum(range(1, 15))), id="bytes"),
    ],
)
async def test_a_consumer_that_stops_reading_is_cut_off_past_the_bound(
    bound: Bound[int], expected: tuple[int, int]
) -> None:
    closed = asyncio.Event()
    read: list[int] = []

    async def endless() -> AsyncIterator[int]:
        try:
            for i in itertools.count():
                read.append(i)
                yield i
                await asyncio.sleep(0)  # one at a time, as a store watch
        finally:
            closed.set()

    told: list[BufferOverflow] = []
    batches = ready_batches(endless(), 1000, bound, on_overflow=told.append)
    assert await anext(batches) == [0]  # ... and then the consumer stops
    async with asyncio.timeout(5):
        await closed.wait()  # the reader stopped reading and closed the source
    [overflow] = told
    assert (overflow.items, overflow.bytes) == expected  # the items 1.. waited: one over the bound
    assert len(read) == expected[0] + 1
    with pytest.raises(BufferOverflow):  # what waited is dropped: the overflow comes next
        await anext(batches)
    assert not readers()


async def test_a_consumer_that_keeps_up_is_never_cut_off() -> None:
    async def trickle() -> AsyncIterator[int]:
        for i in range(50):
            yield i
            await asyncio.sleep(0)

    batches = ready_batches(trickle(), 4, Bound(4, 10**9, _sized))
    assert [i for b in await collect(batches) for i in b] == list(range(50))


async def test_with_a_bound_the_source_error_still_comes_after_its_items() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("store lost")

    batches: list[list[int]] = []
    with pytest.raises(RuntimeError, match="store lost"):
        await consume(ready_batches(failing(), 10, Bound(10, 100, _sized)), batches, then=asyncio.Event())
    assert batches == [[1]]
