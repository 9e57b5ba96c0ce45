"""The `Store` contract, run against MemoryStore and EtcdStore alike.

Both run the same assertions, so the in-memory twin can stand in for etcd in
every other test. On the shared etcd the revision counter and compaction are
global: tests only rely on revisions they produced themselves, and compact at
their own last write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from controlplane.store.base import EventType, KeyValue, ListPage, Store, WatchEvent
from controlplane.store.errors import (
    AlreadyExistsError,
    CompactedError,
    ConflictError,
    NotFoundError,
    StoreError,
)

WAIT = 10.0  # deadline for watch events, in seconds


async def take(events: AsyncIterator[WatchEvent], count: int) -> list[WatchEvent]:
    """The next ``count`` events, failing if they do not come within WAIT."""
    async with asyncio.timeout(WAIT):
        return [await anext(events) for _ in range(count)]


async def list_all(store: Store, prefix: str, *, limit: int) -> list[ListPage]:
    """Every page of a listing, later pages read at the first page's revision."""
    pages = [await store.list(prefix, limit=limit)]
    while pages[-1].more:
        last = pages[-1]
        pages.append(await store.list(prefix, limit=limit, start_after=last.items[-1].key, revision=last.revision))
    return pages


def put(key: str, value: bytes, revision: int, created: int, prev: bytes | None) -> WatchEvent:
    return WatchEvent(EventType.PUT, key, value, revision, created, prev)


def deleted(key: str, revision: int, prev: bytes | None) -> WatchEvent:
    return WatchEvent(EventType.DELETE, key, b"", revision, 0, prev)


# -- get / create ---------------------------------------------------------------


async def test_get_missing_key_returns_none(store: Store, key_prefix: str) -> None:
    assert await store.get(key_prefix + "missing") is None


async def test_create_then_get(store: Store, key_prefix: str) -> None:
    key = key_prefix + "a"
    before = await store.current_revision()

    revision = await store.create(key, b"v1")

    assert revision > before
    assert await store.current_revision() == revision
    assert await store.get(key) == KeyValue(key, b"v1", create_revision=revision, mod_revision=revision)


async def test_create_existing_key_raises_already_exists(store: Store, key_prefix: str) -> None:
    key = key_prefix + "a"
    revision = await store.create(key, b"first")

    with pytest.raises(AlreadyExistsError) as info:
        await store.create(key, b"second")

    assert info.value.key == key
    assert not info.value.temporary
    assert await store.get(key) == KeyValue(key, b"first", revision, revision)
    assert await store.current_revision() == revision  # a failed write bumps nothing


async def test_create_again_after_delete_starts_a_new_life(store: Store, key_prefix: str) -> None:
    key = key_prefix + "a"
    await store.create(key, b"old")
    await store.delete(key)

    revision = await store.create(key, b"new")

    assert await store.get(key) == KeyValue(key, b"new", revision, revision)


# -- update ---------------------------------------------------------------------


async def test_update_with_current_revision_bumps_mod_revision(store: Store, key_prefix: str) -> None:
    key = key_prefix + "a"
    created = await store.create(key, b"v1")

    updated = await store.update(key, b"v2", expected_revision=created)

    assert updated > created
    assert await store.get(key) == KeyValue(key, b"v2", create_revision=created, mod_revision=updated)


async def test_update_with_stale_revision_conflicts(store: Store, key_prefix: str) -> None:
    key = key_prefix + "a"
    created = await store.create(key, b"v1")
    updated = await store.update(key, b"v2", expected_revision=created)

    with pytest.raises(ConflictError) as info:
        await store.update(key, b"v3", expected_revision=created)

    assert (info.value.key, info.value.expected_revision, info.value.actual_revision) == (
        key,
        created,
        updated,
    )
    assert not info.value.temporary
    assert await store.get(key) == KeyValue(key, b"v2", created, updated)


@pytest.mark.parametrize("expected_revision", [0, 1, 10**9])
async def test_update_absent_key_raises_not_found(store: Store, key_prefix: str, expected_revision: int) -> None:
    key = key_prefix + "absent"

    with pytest.raises(NotFoundError) as info:
        await store.update(key, b"v", expected_revision=expected_revision)

    assert info.value.key == key
    assert await store.get(key) is None


async def test_concurrent_updates_at_the_same_revision_exactly_one_wins(store: Store, key_prefix: str) -> None:
    key = key_prefix + "contended"
    created = await store.create(key, b"v0")

    results = await asyncio.gather(
        *(store.update(key, f"v{i}".encode(), expected_revision=created) for i in range(1, 11)),
        return_exceptions=True,
    )

    winners = [(i, r) for i, r in enumerate(results, start=1) if isinstance(r, int)]
    losers = [r for r in results if isinstance(r, ConflictError)]
    assert len(winners) == 1, results
    assert len(losers) == 9, results
    ((winner, revision),) = winners
    assert all(loser.actual_revision == revision for loser in losers)
    assert await store.get(key) == KeyValue(key, f"v{winner}".encode(), created, revision)


# -- delete ---------------------------------------------------------------------


async def test_delete_without_expected_revision(store: Store, key_prefix: str) -> None:
    key = key_prefix + "a"
    created = await store.create(key, b"v")

    revision = await store.delete(key)

    assert revision > created
    assert await store.current_revision() == revision
    assert await store.get(key) is None


async def test_delete_with_expected_revision(store: Store, key_prefix: str) -> None:
    key = key_prefix + "a"
    created = await store.create(key, b"v1")
    updated = await store.update(key, b"v2", expected_revision=created)

    with pytest.raises(ConflictError) as info:
        await store.delete(key, expected_revision=created)
    assert (info.value.expected_revision, info.value.actual_revision) == (created, updated)
    assert await store.get(key) == KeyValue(key, b"v2", created, updated)

    revision = await store.delete(key, expected_revision=updated)
    assert revision > updated
    assert await store.get(key) is None


@pytest.mark.parametrize("expected_revision", [None, 1])
async def test_delete_absent_key_raises_not_found(store: Store, key_prefix: str, expected_revision: int | None) -> None:
    key = key_prefix + "absent"
    before = await store.current_revision()

    with pytest.raises(NotFoundError) as info:
        await store.delete(key, expected_revision=expected_revision)

    assert info.value.key == key
    assert await store.current_revision() == before


# -- list -----------------------------------------------------------------------


async def test_list_paginates_in_key_order(store: Store, key_prefix: str) -> None:
    prefix = key_prefix + "items/"
    keys = [f"{prefix}{i:02d}" for i in range(25)]
    for key in reversed(keys):  # written out of order, listed in order
        await store.create(key, key.encode())

    pages = await list_all(store, prefix, limit=10)

    assert [len(p.items) for p in pages] == [10, 10, 5]
    assert [p.more for p in pages] == [True, True, False]
    assert len({p.revision for p in pages}) == 1
    assert pages[0].revision == await store.current_revision()
    items = [kv for p in pages for kv in p.items]
    assert [kv.key for kv in items] == keys
    assert all(kv.value == kv.key.encode() for kv in items)


async def test_list_pages_read_one_consistent_snapshot(store: Store, key_prefix: str) -> None:
    prefix = key_prefix + "items/"
    keys = [f"{prefix}{i:02d}" for i in range(25)]
    revisions = {key: await store.create(key, b"original") for key in keys}
    first = await store.list(prefix, limit=10)

    # Writes between pages, all landing in later pages.
    await store.create(prefix + "15a", b"new")
    await store.update(prefix + "22", b"changed", expected_revision=revisions[prefix + "22"])
    await store.delete(prefix + "12")
    second = await store.list(prefix, limit=10, start_after=first.items[-1].key, revision=first.revision)
    third = await store.list(prefix, limit=10, start_after=second.items[-1].key, revision=first.revision)

    snapshot = first.items + second.items + third.items
    assert (second.revision, third.revision, third.more) == (first.revision, first.revision, False)
    assert snapshot == [KeyValue(k, b"original", revisions[k], revisions[k]) for k in keys]

    now = [kv for page in await list_all(store, prefix, limit=10) for kv in page.items]
    assert prefix + "12" not in {kv.key for kv in now}
    assert prefix + "15a" in {kv.key for kv in now}
    assert {kv.key: kv.value for kv in now}[prefix + "22"] == b"changed"


async def test_list_sees_only_the_prefix(store: Store, key_prefix: str) -> None:
    for name in ["a/1", "a/2", "a/2/x", "ab", "a", "b/1"]:
        await store.create(key_prefix + name, name.encode())

    page = await store.list(key_prefix + "a/")

    assert [kv.key for kv in page.items] == [key_prefix + n for n in ["a/1", "a/2", "a/2/x"]]
    assert not page.more
    everything = await store.list(key_prefix)
    assert [kv.key for kv in everything.items] == [key_prefix + n for n in ["a", "a/1", "a/2", "a/2/x", "ab", "b/1"]]


async def test_list_start_after_skips_up_to_that_key(store: Store, key_prefix: str) -> None:
    keys = [key_prefix + c for c in "abcde"]
    for key in keys:
        await store.create(key, b"")

    middle = await store.list(key_prefix, start_after=key_prefix + "b", limit=2)
    between = await store.list(key_prefix, start_after=key_prefix + "bb")
    after_last = await store.list(key_prefix, start_after=key_prefix + "e")
    beyond_prefix = await store.list(key_prefix, start_after="\U0010ffff")

    assert ([kv.key for kv in middle.items], middle.more) == (keys[2:4], True)
    assert [kv.key for kv in between.items] == keys[2:]
    assert (after_last.items, after_last.more) == ([], False)
    assert (beyond_prefix.items, beyond_prefix.more) == ([], False)


async def test_list_at_past_revision_shows_values_then(store: Store, key_prefix: str) -> None:
    key = key_prefix + "a"
    created = await store.create(key, b"v1")
    gone = await store.create(key_prefix + "b", b"b")
    await store.update(key, b"v2", expected_revision=created)
    await store.delete(key_prefix + "b")

    then = await store.list(key_prefix, revision=gone)

    assert then.revision == gone
    assert then.items == [KeyValue(key, b"v1", created, created), KeyValue(key_prefix + "b", b"b", gone, gone)]


async def test_list_pages_of_large_values_stay_complete(store: Store, key_prefix: str) -> None:
    """Five 1 MiB values do not fit one gRPC message (4 MiB): pages shrink, nothing is lost."""
    values = {f"{key_prefix}{i}": bytes([i]) * 2**20 for i in range(5)}
    for key, value in values.items():
        await store.create(key, value)

    pages = await list_all(store, key_prefix, limit=10)

    assert all(len(page.items) <= 10 for page in pages)
    assert {kv.key: kv.value for page in pages for kv in page.items} == values
    assert [kv.key for page in pages for kv in page.items] == sorted(values)


async def test_list_at_a_future_revision_is_an_error(store: Store, key_prefix: str) -> None:
    future = await store.current_revision() + 1000

    with pytest.raises(StoreError) as info:
        await store.list(key_prefix, revision=future)

    assert not isinstance(info.value, CompactedError)


async def test_list_rejects_a_limit_below_one(store: Store, key_prefix: str) -> None:
    with pytest.raises(ValueError):
        await store.list(key_prefix, limit=0)


# -- watch ----------------------------------------------------------------------


async def test_watch_replays_history_then_follows_live_changes(store: Store, key_prefix: str) -> None:
    prefix = key_prefix + "w/"
    a, b = prefix + "a", prefix + "b"
    r1 = await store.create(a, b"1")
    r2 = await store.update(a, b"2", expected_revision=r1)
    await store.create(key_prefix + "elsewhere", b"not watched")
    r3 = await store.delete(a)
    r4 = await store.create(b, b"x")

    async with contextlib.aclosing(store.watch(prefix, start_revision=r1)) as events:
        history = await take(events, 4)
        r5 = await store.update(b, b"y", expected_revision=r4)
        live = await take(events, 1)

    assert history == [
        put(a, b"1", r1, r1, None),
        put(a, b"2", r2, r1, b"1"),
        deleted(a, r3, b"2"),
        put(b, b"x", r4, r4, None),
    ]
    assert live == [put(b, b"y", r5, r4, b"x")]


async def test_watch_from_the_next_revision_sees_only_new_changes(store: Store, key_prefix: str) -> None:
    old = await store.create(key_prefix + "old", b"before")

    async with contextlib.aclosing(store.watch(key_prefix, start_revision=old + 1)) as events:
        new = await store.create(key_prefix + "new", b"after")
        got = await take(events, 1)

    assert got == [put(key_prefix + "new", b"after", new, new, None)]


async def test_watch_from_a_future_revision_skips_changes_before_it(store: Store, key_prefix: str) -> None:
    now = await store.current_revision()

    async with contextlib.aclosing(store.watch(key_prefix, start_revision=now + 3)) as events:
        waiting = asyncio.create_task(take(events, 1))
        await asyncio.sleep(0)  # let the watch start (if it can) before the writes
        await store.create(key_prefix + "a", b"")  # now + 1
        await store.create(key_prefix + "b", b"")  # now + 2
        third = await store.create(key_prefix + "c", b"")
        got = await waiting

    assert third == now + 3
    assert got == [put(key_prefix + "c", b"", third, third, None)]


async def test_watch_after_list_misses_nothing(store: Store, key_prefix: str) -> None:
    """The informer pattern: list, then watch from the list's revision + 1."""
    await store.create(key_prefix + "a", b"1")
    page = await store.list(key_prefix)
    between = await store.create(key_prefix + "b", b"2")  # after the list, before the watch

    async with contextlib.aclosing(store.watch(key_prefix, start_revision=page.revision + 1)) as events:
        got = await take(events, 1)

    assert got == [put(key_prefix + "b", b"2", between, between, None)]


async def test_closing_a_watch_leaves_no_tasks_behind(store: Store, key_prefix: str) -> None:
    async def watch_one(name: str) -> None:
        revision = await store.create(key_prefix + name, b"")
        async with contextlib.aclosing(store.watch(key_prefix, start_revision=revision)) as events:
            assert [e.key for e in await take(events, 1)] == [key_prefix + name]

    await watch_one("first")  # may start a long-lived connection-level task
    before = asyncio.all_tasks()
    await watch_one("second")
    await watch_one("third")
    await asyncio.sleep(0)  # let finalizers scheduled by the closes run

    assert asyncio.all_tasks() == before


async def test_watch_ends_when_the_store_is_closed(store: Store, key_prefix: str) -> None:
    revision = await store.create(key_prefix + "a", b"")
    events = store.watch(key_prefix, start_revision=revision)
    assert len(await take(events, 1)) == 1

    await store.close()

    async with asyncio.timeout(WAIT):
        assert [e async for e in events] == []


async def test_watch_rejects_start_revision_below_one(store: Store, key_prefix: str) -> None:
    with pytest.raises(ValueError):
        await anext(store.watch(key_prefix, start_revision=0))


# -- compaction -----------------------------------------------------------------


async def test_watch_from_compacted_revision_raises_compacted(store: Store, key_prefix: str) -> None:
    key, other = key_prefix + "a", key_prefix + "b"
    r1 = await store.create(key, b"1")
    await store.update(key, b"2", expected_revision=r1)
    r3 = await store.create(other, b"x")
    await store.compact(r3)

    with pytest.raises(CompactedError) as info:
        async with asyncio.timeout(WAIT):
            await anext(store.watch(key_prefix, start_revision=r1))

    assert (info.value.requested_revision, info.value.compact_revision) == (r1, r3)
    # From the compaction revision itself history is still there.
    async with contextlib.aclosing(store.watch(key_prefix, start_revision=r3)) as events:
        assert await take(events, 1) == [put(other, b"x", r3, r3, None)]


async def test_list_at_compacted_revision_raises_compacted(store: Store, key_prefix: str) -> None:
    key = key_prefix + "a"
    r1 = await store.create(key, b"1")
    r2 = await store.update(key, b"2", expected_revision=r1)
    await store.compact(r2)

    with pytest.raises(CompactedError) as info:
        await store.list(key_prefix, revision=r1)

    assert info.value.requested_revision == r1
    at_compaction = await store.list(key_prefix, revision=r2)
    assert at_compaction.items == [KeyValue(key, b"2", r1, r2)]
    assert await store.get(key) == KeyValue(key, b"2", r1, r2)


async def test_compact_at_or_below_the_compaction_revision_raises(store: Store, key_prefix: str) -> None:
    revision = await store.create(key_prefix + "a", b"")
    await store.compact(revision)

    with pytest.raises(CompactedError):
        await store.compact(revision)


async def test_update_many_is_all_or_nothing_at_one_revision(store: Store, key_prefix: str) -> None:
    keys = [f"{key_prefix}batch/{i}" for i in range(5)]
    revisions = [await store.create(k, b"v0") for k in keys]
    written = await store.update_many([(k, b"v1", r) for k, r in zip(keys, revisions, strict=True)])
    after = [kv for k in keys if (kv := await store.get(k)) is not None]
    assert len(after) == 5
    assert all(kv.value == b"v1" and kv.mod_revision == written for kv in after)
    stale = [(k, b"v2", written) for k in keys[:4]] + [(keys[4], b"v2", revisions[4])]
    with pytest.raises(ConflictError):
        await store.update_many(stale)
    unchanged = [kv.value for k in keys if (kv := await store.get(k)) is not None]
    assert unchanged == [b"v1"] * 5
    with pytest.raises(ConflictError):
        await store.update_many([(f"{key_prefix}batch/missing", b"x", 1)])
