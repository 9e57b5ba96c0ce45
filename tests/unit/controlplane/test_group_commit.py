"""Group commit: `batches` cuts writes within the limits, in order; `GroupCommit`
sends the writes of one loop turn together and answers each caller on its own."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.store.group_commit import GroupCommit, PendingWrite, batches

pytestmark = pytest.mark.timeout(30)

MiB = 1 << 20


# -- batches --------------------------------------------------------------------


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop to make the writes' futures on (`batches` never touches them)."""
    new = asyncio.new_event_loop()
    yield new
    new.close()


def pending(loop: asyncio.AbstractEventLoop, specs: Sequence[tuple[str, int]]) -> list[PendingWrite]:
    """A write per ``(key, value size)``."""
    return [PendingWrite(key, b"x" * size, loop.create_future()) for key, size in specs]


@pytest.mark.parametrize(
    ("specs", "max_items", "max_bytes", "expected"),
    [
        pytest.param([], 3, 100, [], id="nothing"),
        pytest.param([("a", 1), ("b", 1), ("c", 1)], 3, 100, [["a", "b", "c"]], id="all-fit"),
        pytest.param(
            [("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1), ("f", 1), ("g", 1)],
            3,
            100,
            [["a", "b", "c"], ["d", "e", "f"], ["g"]],
            id="max-items",
        ),
        pytest.param([("a", 40), ("b", 60), ("c", 1)], 10, 100, [["a", "b"], ["c"]], id="max-bytes-exactly-full"),
        pytest.param([("a", 40), ("b", 61), ("c", 1)], 10, 100, [["a"], ["b", "c"]], id="max-bytes-one-over"),
        pytest.param(
            [("a", 1), ("b", 1), ("a", 1), ("c", 1)],
            10,
            100,
            [["a", "b"], ["a", "c"]],
            id="repeated-key-starts-next-batch",
        ),
        pytest.param(
            [("a", 1), ("b", 1), ("b", 1), ("b", 1)], 10, 100, [["a", "b"], ["b"], ["b"]], id="same-key-thrice"
        ),
        pytest.param(
            [("a", 10), ("big", 500), ("c", 10)], 10, 100, [["a"], ["big"], ["c"]], id="oversized-value-alone"
        ),
        pytest.param([("big", 500), ("huge", 900)], 10, 100, [["big"], ["huge"]], id="oversized-values-each-alone"),
        pytest.param([("a", 0), ("b", 0), ("c", 0)], 2, 1, [["a", "b"], ["c"]], id="empty-values-count-as-items"),
    ],
)
def test_batches_cut_at_the_limits(
    loop: asyncio.AbstractEventLoop,
    specs: list[tuple[str, int]],
    max_items: int,
    max_bytes: int,
    expected: list[list[str]],
) -> None:
    writes = pending(loop, specs)

    cut = batches(writes, max_items, max_bytes)

    assert [[w.key for w in batch] for batch in cut] == expected
    assert [w for batch in cut for w in batch] == writes  # the same writes, in order


@given(
    specs=st.lists(st.tuples(st.sampled_from("abcdef"), st.integers(0, 50)), max_size=40),
    max_items=st.integers(1, 6),
    max_bytes=st.integers(1, 120),
)
def test_batches_keep_order_and_limits_and_are_as_full_as_allowed(
    specs: list[tuple[str, int]], max_items: int, max_bytes: int
) -> None:
    loop = asyncio.new_event_loop()
    try:
        writes = pending(loop, specs)
        cut = batches(writes, max_items, max_bytes)
    finally:
        loop.close()

    assert [w for batch in cut for w in batch] == writes
    for batch in cut:
        size = sum(len(w.value) for w in batch)
        assert batch, "an empty batch"
        assert len(batch) <= max_items
        assert size <= max_bytes or len(batch) == 1, "only a lone write may exceed max_bytes"
        assert len({w.key for w in batch}) == len(batch), "a key twice in one batch"
    for batch, following in itertools.pairwise(cut):
        nxt = following[0]
        full = (
            len(batch) >= max_items
            or sum(len(w.value) for w in batch) + len(nxt.value) > max_bytes
            or nxt.key in {w.key for w in batch}
        )
        assert full, "a batch was cut while the next write still fit"


# -- GroupCommit ----------------------------------------------------------------


def revision_of(key: str) -> int:
    """The fake store's answer for ``key`` ("k7" → 1007): each caller's own."""
    return 1000 + int(key.removeprefix("k"))


@dataclass
class FakeCommit:
    """A ``commit`` that records each batch it gets and answers each write
    with `revision_of` its key, or ``errors[key]``; a batch holding
    ``fail_on`` raises ``failure`` instead."""

    errors: dict[str, BaseException] = field(default_factory=dict)
    fail_on: str | None = None
    failure: BaseException = field(default_factory=lambda: RuntimeError("store down"))
    got: list[list[tuple[str, bytes]]] = field(default_factory=list)

    @property
    def keys(self) -> list[list[str]]:
        return [[key for key, _ in batch] for batch in self.got]

    async def __call__(self, batch: Sequence[PendingWrite]) -> list[int | BaseException]:
        self.got.append([(w.key, w.value) for w in batch])
        await asyncio.sleep(0)  # the round trip
        if self.fail_on is not None and any(w.key == self.fail_on for w in batch):
            raise self.failure
        return [self.errors.get(w.key, revision_of(w.key)) for w in batch]


async def turns(n: int) -> None:
    """Let the loop run ``n`` turns (no timer involved)."""
    for _ in range(n):
        await asyncio.sleep(0)


def test_a_batch_needs_room_for_one_write() -> None:
    fake = FakeCommit()
    with pytest.raises(ValueError):
        GroupCommit(fake, max_items=0, max_bytes=MiB)
    with pytest.raises(ValueError):
        GroupCommit(fake, max_items=64, max_bytes=0)


async def test_writes_issued_together_go_in_one_batch_and_each_caller_gets_its_own_answer() -> None:
    fake = FakeCommit()
    group = GroupCommit(fake, max_items=64, max_bytes=MiB)

    results = await asyncio.gather(*(group.write(f"k{i}", f"v{i}".encode()) for i in range(5)))

    assert fake.got == [[(f"k{i}", f"v{i}".encode()) for i in range(5)]]
    assert results == [1000, 1001, 1002, 1003, 1004]


async def test_a_per_write_error_reaches_only_its_caller() -> None:
    refused = KeyError("k2 exists")
    fake = FakeCommit(errors={"k2": refused})
    group = GroupCommit(fake, max_items=64, max_bytes=MiB)

    results = await asyncio.gather(*(group.write(f"k{i}", b"") for i in range(4)), return_exceptions=True)

    assert fake.keys == [["k0", "k1", "k2", "k3"]]
    assert results == [1000, 1001, refused, 1003]
    assert results[2] is refused


async def test_a_commit_that_raises_fails_every_caller_of_its_batch_only() -> None:
    fake = FakeCommit(fail_on="k2")
    group = GroupCommit(fake, max_items=2, max_bytes=MiB)

    results = await asyncio.gather(*(group.write(f"k{i}", b"") for i in range(4)), return_exceptions=True)

    assert fake.keys == [["k0", "k1"], ["k2", "k3"]]
    assert results[:2] == [1000, 1001]
    assert results[2] is fake.failure and results[3] is fake.failure
    # The group still commits afterwards.
    assert await group.write("k5", b"") == 1005


async def test_a_write_is_sent_within_a_few_loop_turns_and_a_later_one_goes_alone() -> None:
    fake = FakeCommit()
    group = GroupCommit(fake, max_items=64, max_bytes=MiB)

    first = asyncio.create_task(group.write("k1", b""))
    await turns(5)
    assert fake.keys == [["k1"]]  # sent without waiting for a timer or for more writes
    second = await group.write("k2", b"")

    assert fake.keys == [["k1"], ["k2"]]
    assert (await first, second) == (1001, 1002)


async def test_the_same_key_twice_in_one_turn_goes_in_two_batches() -> None:
    fake = FakeCommit()
    group = GroupCommit(fake, max_items=64, max_bytes=MiB)

    results = await asyncio.gather(group.write("k1", b"a"), group.write("k2", b""), group.write("k1", b"b"))

    assert fake.got == [[("k1", b"a"), ("k2", b"")], [("k1", b"b")]]
    assert list(results) == [1001, 1002, 1001]


async def test_a_caller_cancelled_before_the_flush_is_left_out() -> None:
    fake = FakeCommit()
    group = GroupCommit(fake, max_items=64, max_bytes=MiB)
    gone = asyncio.create_task(group.write("k1", b""))
    kept = asyncio.create_task(group.write("k2", b""))
    await asyncio.sleep(0)  # both writes are waiting; the flush is queued behind this task
    assert fake.got == []

    gone.cancel()

    results = await asyncio.gather(gone, kept, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert results[1] == 1002
    assert fake.keys == [["k2"]]


async def test_a_caller_cancelled_while_its_batch_is_in_flight_leaves_the_others_answered() -> None:
    sent = asyncio.Event()
    release = asyncio.Event()

    async def slow(batch: Sequence[PendingWrite]) -> list[int | BaseException]:
        sent.set()
        await release.wait()
        return [revision_of(w.key) for w in batch]

    group = GroupCommit(slow, max_items=64, max_bytes=MiB)
    tasks = [asyncio.create_task(group.write(f"k{i}", b"")) for i in range(3)]
    async with asyncio.timeout(5):
        await sent.wait()

    tasks[1].cancel()
    release.set()

    async with asyncio.timeout(5):  # a caller left unanswered would hang here
        results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == 1000 and results[2] == 1002
    assert isinstance(results[1], asyncio.CancelledError)


async def test_max_items_splits_concurrent_writes_in_order() -> None:
    fake = FakeCommit()
    group = GroupCommit(fake, max_items=64, max_bytes=MiB)

    results = await asyncio.gather(*(group.write(f"k{i}", b"v") for i in range(150)))

    assert [len(batch) for batch in fake.keys] == [64, 64, 22]
    assert [key for batch in fake.keys for key in batch] == [f"k{i}" for i in range(150)]
    assert results == [revision_of(f"k{i}") for i in range(150)]


async def test_max_bytes_splits_concurrent_writes() -> None:
    fake = FakeCommit()
    group = GroupCommit(fake, max_items=64, max_bytes=100)

    results = await asyncio.gather(*(group.write(f"k{i}", b"x" * 40) for i in range(5)))

    assert fake.keys == [["k0", "k1"], ["k2", "k3"], ["k4"]]
    assert results == [1000, 1001, 1002, 1003, 1004]
