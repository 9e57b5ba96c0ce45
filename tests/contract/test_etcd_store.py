"""What only the etcd store does: endpoints of a cluster tried in turn,
watches that end when cancelled at any point of their registration, and
creates and compare-and-swap updates issued together group-committed in few
transactions, each still answered on its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from controlplane.store.base import MAX_BATCH, Fence, KeyValue
from controlplane.store.errors import (
    AlreadyExistsError,
    ConflictError,
    FencedError,
    NotFoundError,
    UnavailableError,
)
from controlplane.store.etcd import EtcdStore

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]

DEAD = "127.0.0.1:1"  # nothing listens on port 1


async def test_connect_skips_endpoints_that_do_not_answer(etcd_major_endpoint: str, key_prefix: str) -> None:
    store = await EtcdStore.connect([DEAD, etcd_major_endpoint], timeout=2)
    try:
        assert store.endpoint == etcd_major_endpoint
        assert await store.create(key_prefix + "a", b"") > 0
    finally:
        await store.close()


async def test_connect_fails_when_no_endpoint_answers() -> None:
    with pytest.raises(UnavailableError, match="no etcd endpoint answered"):
        await EtcdStore.connect([DEAD, "127.0.0.1:2"], timeout=2)


async def test_a_watch_cancelled_while_it_registers_always_ends(etcd_major_endpoint: str, key_prefix: str) -> None:
    """A cancel landing at any step of the registration ends the watcher's
    task (aetcd's wait_for on Python 3.11 could swallow it: a hang)."""
    store = await EtcdStore.connect([etcd_major_endpoint])
    try:
        revision = await store.create(key_prefix + "a", b"")
        for steps in range(40):
            events = store.watch(key_prefix, start_revision=revision + 1)
            task = asyncio.create_task(anext(events))
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=10)
            assert task in done, f"the watch ignored a cancel after {steps} steps"
            await events.aclose()
    finally:
        await store.close()


# -- group commit ---------------------------------------------------------------


@pytest.fixture
async def etcd(etcd_major_endpoint: str) -> AsyncIterator[EtcdStore]:
    store = await EtcdStore.connect([etcd_major_endpoint])
    try:
        yield store
    finally:
        await store.close()


async def test_concurrent_creates_share_few_transactions(etcd: EtcdStore, key_prefix: str) -> None:
    keys = [f"{key_prefix}{i:03d}" for i in range(100)]

    revisions = await asyncio.gather(*(etcd.create(key, key.encode()) for key in keys))

    assert len(set(revisions)) <= -(-len(keys) // MAX_BATCH)  # 2 transactions, not 100
    page = await etcd.list(key_prefix)
    assert page.items == [KeyValue(key, key.encode(), rev, rev) for key, rev in zip(keys, revisions, strict=True)]


async def test_only_the_existing_key_of_concurrent_creates_fails(etcd: EtcdStore, key_prefix: str) -> None:
    keys = [f"{key_prefix}{i}" for i in range(10)]
    old = await etcd.create(keys[4], b"old")

    results = await asyncio.gather(*(etcd.create(key, b"new") for key in keys), return_exceptions=True)

    assert isinstance(results[4], AlreadyExistsError) and results[4].key == keys[4]
    assert await etcd.get(keys[4]) == KeyValue(keys[4], b"old", old, old)
    for key, result in zip(keys, results, strict=True):
        if key != keys[4]:
            assert isinstance(result, int), (key, result)
            assert await etcd.get(key) == KeyValue(key, b"new", result, result)


async def test_two_concurrent_creates_of_one_new_key_one_wins(etcd: EtcdStore, key_prefix: str) -> None:
    key = key_prefix + "obj"

    results = await asyncio.gather(etcd.create(key, b"a"), etcd.create(key, b"b"), return_exceptions=True)

    won = [(value, r) for value, r in zip([b"a", b"b"], results, strict=True) if isinstance(r, int)]
    lost = [r for r in results if not isinstance(r, int)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], AlreadyExistsError)
    value, revision = won[0]
    assert await etcd.get(key) == KeyValue(key, value, revision, revision)


async def test_concurrent_creates_over_the_request_limit_are_split(etcd: EtcdStore, key_prefix: str) -> None:
    """Three 600 KB values: etcd would refuse them in one request (over its 1.5 MiB limit)."""
    values = {f"{key_prefix}{i}": bytes([65 + i]) * 600_000 for i in range(3)}

    revisions = await asyncio.gather(*(etcd.create(key, value) for key, value in values.items()))

    assert len(set(revisions)) == 3  # at most one 600 KB value fits in a batch
    for (key, value), revision in zip(values.items(), revisions, strict=True):
        assert await etcd.get(key) == KeyValue(key, value, revision, revision)


async def test_concurrent_fenced_creates_all_fail_once_the_fence_is_lost(etcd: EtcdStore, key_prefix: str) -> None:
    fence = Fence(key_prefix + "leader", await etcd.create(key_prefix + "leader", b"leader-1"))
    fenced = etcd.fenced(fence)
    await etcd.delete(fence.key)
    new_term = await etcd.create(fence.key, b"leader-2")
    keys = [f"{key_prefix}obj-{i}" for i in range(10)]
    before = await etcd.current_revision()

    results = await asyncio.gather(*(fenced.create(key, b"") for key in keys), return_exceptions=True)

    assert all(isinstance(r, FencedError) for r in results), results
    assert all(r.actual_revision == new_term for r in results if isinstance(r, FencedError))
    assert await etcd.current_revision() == before
    page = await etcd.list(key_prefix + "obj-")
    assert page.items == []


async def test_concurrent_fenced_creates_under_a_holding_fence_fail_only_on_the_existing_key(
    etcd: EtcdStore, key_prefix: str
) -> None:
    fence = Fence(key_prefix + "leader", await etcd.create(key_prefix + "leader", b"leader-1"))
    fenced = etcd.fenced(fence)
    keys = [f"{key_prefix}obj-{i}" for i in range(5)]
    await etcd.create(keys[2], b"old")

    results = await asyncio.gather(*(fenced.create(key, b"new") for key in keys), return_exceptions=True)

    assert isinstance(results[2], AlreadyExistsError)
    assert all(isinstance(r, int) for i, r in enumerate(results) if i != 2), results
    page = await etcd.list(key_prefix + "obj-")
    assert [kv.value for kv in page.items] == [b"new", b"new", b"old", b"new", b"new"]


async def test_concurrent_updates_share_few_transactions(etcd: EtcdStore, key_prefix: str) -> None:
    keys = [f"{key_prefix}{i:03d}" for i in range(100)]
    created = await asyncio.gather(*(etcd.create(key, b"old") for key in keys))

    revisions = await asyncio.gather(
        *(etcd.update(key, key.encode(), expected_revision=rev) for key, rev in zip(keys, created, strict=True))
    )

    assert len(set(revisions)) <= -(-len(keys) // MAX_BATCH)  # 2 transactions, not 100
    assert min(revisions) > max(created)
    page = await etcd.list(key_prefix)
    assert page.items == [KeyValue(key, key.encode(), c, r) for key, c, r in zip(keys, created, revisions, strict=True)]


async def test_only_the_stale_and_the_deleted_key_of_concurrent_updates_fail(etcd: EtcdStore, key_prefix: str) -> None:
    keys = [f"{key_prefix}{i}" for i in range(10)]
    created = list(await asyncio.gather(*(etcd.create(key, b"old") for key in keys)))
    moved = await etcd.update(keys[3], b"theirs", expected_revision=created[3])  # created[3] is now stale
    await etcd.delete(keys[6])

    results = await asyncio.gather(
        *(etcd.update(key, b"new", expected_revision=rev) for key, rev in zip(keys, created, strict=True)),
        return_exceptions=True,
    )

    assert isinstance(results[3], ConflictError), results[3]
    assert (results[3].key, results[3].expected_revision, results[3].actual_revision) == (keys[3], created[3], moved)
    assert isinstance(results[6], NotFoundError) and results[6].key == keys[6], results[6]
    assert await etcd.get(keys[3]) == KeyValue(keys[3], b"theirs", created[3], moved)
    assert await etcd.get(keys[6]) is None
    for i, (key, result) in enumerate(zip(keys, results, strict=True)):
        if i not in (3, 6):
            assert isinstance(result, int), (key, result)
            assert await etcd.get(key) == KeyValue(key, b"new", created[i], result)


async def test_concurrent_fenced_updates_all_fail_once_the_fence_is_lost(etcd: EtcdStore, key_prefix: str) -> None:
    fence = Fence(key_prefix + "leader", await etcd.create(key_prefix + "leader", b"leader-1"))
    fenced = etcd.fenced(fence)
    keys = [f"{key_prefix}obj-{i}" for i in range(10)]
    created = await asyncio.gather(*(fenced.create(key, b"old") for key in keys))
    await etcd.delete(fence.key)
    new_term = await etcd.create(fence.key, b"leader-2")
    before = await etcd.current_revision()

    results = await asyncio.gather(
        *(fenced.update(key, b"new", expected_revision=rev) for key, rev in zip(keys, created, strict=True)),
        return_exceptions=True,
    )

    assert all(isinstance(r, FencedError) for r in results), results
    assert all(r.actual_revision == new_term for r in results if isinstance(r, FencedError))
    assert await etcd.current_revision() == before
    page = await etcd.list(key_prefix + "obj-")
    assert [kv.value for kv in page.items] == [b"old"] * len(keys)


async def test_an_update_expecting_revision_0_fails_as_before(etcd: EtcdStore, key_prefix: str) -> None:
    """No key is at revision 0: a conflict for an existing key, not found for a missing one —
    what the single-key transaction has always answered, alone or beside a batch."""
    existing = await etcd.create(key_prefix + "there", b"v")
    other = await etcd.create(key_prefix + "other", b"v")

    with pytest.raises(ConflictError) as conflict:
        await etcd.update(key_prefix + "there", b"w", expected_revision=0)
    assert (conflict.value.key, conflict.value.expected_revision, conflict.value.actual_revision) == (
        key_prefix + "there",
        0,
        existing,
    )
    with pytest.raises(NotFoundError) as missing:
        await etcd.update(key_prefix + "missing", b"w", expected_revision=0)
    assert missing.value.key == key_prefix + "missing"
    results = await asyncio.gather(
        etcd.update(key_prefix + "there", b"w", expected_revision=0),
        etcd.update(key_prefix + "other", b"w", expected_revision=other),
        return_exceptions=True,
    )
    assert isinstance(results[0], ConflictError) and isinstance(results[1], int), results
    assert await etcd.get(key_prefix + "there") == KeyValue(key_prefix + "there", b"v", existing, existing)
    assert await etcd.get(key_prefix + "missing") is None
