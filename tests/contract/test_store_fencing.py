"""The `Store` contract for leases and fenced writes, against MemoryStore and
EtcdStore alike.

Lease expiry takes real seconds on etcd; the memory store runs on a
`ManualClock` that each poll moves on, so the same condition waits serve both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from controlplane.store.base import EventType, Fence, KeyValue, Store
from controlplane.store.errors import (
    AlreadyExistsError,
    ConflictError,
    FencedError,
    LeaseNotFoundError,
    NotFoundError,
)
from controlplane.store.memory import ManualClock, MemoryStore

WAIT = 15.0  # deadline for a lease to expire (etcd checks expiry about every 500 ms)
TTL = 2  # etcd's shortest lease with the default heartbeat (its minimum is 1.5 s, rounded up)


@dataclass
class Clocked:
    """A store and how to let a little time pass on its lease clock."""

    store: Store
    tick: Callable[[], Awaitable[None]]


@pytest.fixture
async def clocked(store_endpoint: str | None) -> AsyncIterator[Clocked]:
    if store_endpoint is None:
        clock = ManualClock(1000.0)
        memory = MemoryStore(clock=clock)

        async def advance() -> None:
            clock.advance(0.5)

        yield Clocked(memory, advance)
        await memory.close()
        return
    from controlplane.store.etcd import EtcdStore

    etcd = await EtcdStore.connect([store_endpoint])

    async def poll() -> None:
        await asyncio.sleep(0.1)

    try:
        yield Clocked(etcd, poll)
    finally:
        await etcd.close()


async def until_absent(clocked: Clocked, key: str, *, keep: int | None = None) -> None:
    """Let time pass until ``key`` is gone, refreshing lease ``keep`` meanwhile."""
    deadline = time.monotonic() + WAIT
    while await clocked.store.get(key) is not None:
        assert time.monotonic() < deadline, f"{key} still present after {WAIT}s"
        if keep is not None:
            await clocked.store.refresh_lease(keep)
        await clocked.tick()


# -- leases -----------------------------------------------------------------------


async def test_revoking_a_lease_deletes_its_keys_in_one_revision(store: Store, key_prefix: str) -> None:
    lease = await store.grant_lease(30)
    first = await store.create(key_prefix + "a", b"1", lease=lease)
    await store.create(key_prefix + "b", b"2", lease=lease)
    await store.create(key_prefix + "c", b"3")

    await store.revoke_lease(lease)

    page = await store.list(key_prefix)
    assert [kv.key for kv in page.items] == [key_prefix + "c"]
    events = store.watch(key_prefix, start_revision=first)
    async with asyncio.timeout(10):
        seen = [await anext(events) for _ in range(5)]
    await events.aclose()
    deletes = [e for e in seen if e.type is EventType.DELETE]
    assert [e.key for e in deletes] == [key_prefix + "a", key_prefix + "b"]
    assert deletes[0].revision == deletes[1].revision


async def test_refresh_returns_the_ttl_and_fails_once_revoked(store: Store) -> None:
    lease = await store.grant_lease(30)
    assert 0 < await store.refresh_lease(lease) <= 30

    await store.revoke_lease(lease)

    with pytest.raises(LeaseNotFoundError) as info:
        await store.refresh_lease(lease)
    assert not info.value.temporary
    await store.revoke_lease(lease)  # revoking again is not an error


async def test_create_with_an_unknown_lease_writes_nothing(store: Store, key_prefix: str) -> None:
    lease = await store.grant_lease(30)
    await store.revoke_lease(lease)
    before = await store.current_revision()

    with pytest.raises(LeaseNotFoundError):
        await store.create(key_prefix + "a", b"", lease=lease)

    assert await store.get(key_prefix + "a") is None
    assert await store.current_revision() == before


async def test_create_with_a_lease_is_still_create_if_absent(store: Store, key_prefix: str) -> None:
    mine, theirs = await store.grant_lease(30), await store.grant_lease(30)
    revision = await store.create(key_prefix + "leader", b"me", lease=mine)

    with pytest.raises(AlreadyExistsError):
        await store.create(key_prefix + "leader", b"you", lease=theirs)

    assert await store.get(key_prefix + "leader") == KeyValue(key_prefix + "leader", b"me", revision, revision)
    await store.revoke_lease(mine)
    await store.revoke_lease(theirs)


async def test_an_unrefreshed_lease_expires_and_a_refreshed_one_lives(clocked: Clocked, key_prefix: str) -> None:
    store = clocked.store
    kept, dropped = await store.grant_lease(TTL), await store.grant_lease(TTL)
    await store.create(key_prefix + "kept", b"", lease=kept)
    await store.create(key_prefix + "dropped", b"", lease=dropped)

    await until_absent(clocked, key_prefix + "dropped", keep=kept)

    assert await store.get(key_prefix + "kept") is not None
    with pytest.raises(LeaseNotFoundError):
        await store.refresh_lease(dropped)
    await store.revoke_lease(kept)
    assert await store.get(key_prefix + "kept") is None


async def test_an_expired_lease_takes_its_key_and_another_can_create_it(clocked: Clocked, key_prefix: str) -> None:
    store = clocked.store
    key = key_prefix + "leader"
    first = await store.create(key, b"old", lease=await store.grant_lease(TTL))

    await until_absent(clocked, key)
    second = await store.create(key, b"new", lease=await store.grant_lease(30))

    kv = await store.get(key)
    assert kv is not None and kv.value == b"new" and kv.create_revision == second > first


async def test_a_put_without_the_lease_detaches_the_key(store: Store, key_prefix: str) -> None:
    lease = await store.grant_lease(30)
    revision = await store.create(key_prefix + "a", b"1", lease=lease)
    await store.update(key_prefix + "a", b"2", expected_revision=revision)

    await store.revoke_lease(lease)

    kv = await store.get(key_prefix + "a")
    assert kv is not None and kv.value == b"2"


async def test_lease_ttl_below_one_second_is_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.grant_lease(0)


# -- fenced writes ----------------------------------------------------------------


async def fence_on(store: Store, key_prefix: str) -> Fence:
    key = key_prefix + "leader"
    return Fence(key, await store.create(key, b"leader-1"))


async def depose(store: Store, fence: Fence) -> int:
    """Another term: the fence key deleted and created again; its new create_revision."""
    await store.delete(fence.key)
    return await store.create(fence.key, b"leader-2")


async def test_fenced_writes_succeed_while_the_fence_holds(store: Store, key_prefix: str) -> None:
    fenced = store.fenced(await fence_on(store, key_prefix))
    key = key_prefix + "obj"

    created = await fenced.create(key, b"1")
    updated = await fenced.update(key, b"2", expected_revision=created)
    batch = await fenced.update_many([(key, b"3", updated)])
    kv = await fenced.get(key)
    assert kv == KeyValue(key, b"3", created, batch)
    deleted = await fenced.delete(key, expected_revision=batch)

    assert deleted > batch
    assert await store.get(key) is None


async def test_every_fenced_write_fails_after_another_term_begins(store: Store, key_prefix: str) -> None:
    fence = await fence_on(store, key_prefix)
    fenced = store.fenced(fence)
    key = key_prefix + "obj"
    revision = await fenced.create(key, b"mine")
    new_term = await depose(store, fence)
    before = await store.current_revision()

    writes: list[Callable[[], Awaitable[int]]] = [
        lambda: fenced.create(key_prefix + "other", b"x"),
        lambda: fenced.update(key, b"stale", expected_revision=revision),
        lambda: fenced.update_many([(key, b"stale", revision)]),
        lambda: fenced.delete(key, expected_revision=revision),
        lambda: fenced.delete(key),
    ]
    for write in writes:
        with pytest.raises(FencedError) as info:
            await write()
        assert not info.value.temporary
        assert (info.value.fence_key, info.value.fence_revision) == (fence.key, fence.revision)
        assert info.value.actual_revision == new_term

    assert await store.current_revision() == before  # nothing was written
    assert await store.get(key) == KeyValue(key, b"mine", revision, revision)
    assert await store.get(key_prefix + "other") is None


async def test_a_fence_whose_key_is_gone_refuses_writes(store: Store, key_prefix: str) -> None:
    fence = await fence_on(store, key_prefix)
    await store.delete(fence.key)

    with pytest.raises(FencedError) as info:
        await store.fenced(fence).create(key_prefix + "obj", b"")

    assert info.value.actual_revision == 0


async def test_the_fence_is_reported_before_the_writes_own_precondition(store: Store, key_prefix: str) -> None:
    fence = await fence_on(store, key_prefix)
    key = key_prefix + "obj"
    revision = await store.create(key, b"v1")
    await store.update(key, b"v2", expected_revision=revision)  # now `revision` is stale as well
    await depose(store, fence)
    fenced = store.fenced(fence)

    with pytest.raises(FencedError):
        await fenced.create(key, b"exists")
    with pytest.raises(FencedError):
        await fenced.update(key, b"stale", expected_revision=revision)
    with pytest.raises(FencedError):
        await fenced.delete(key_prefix + "missing")


async def test_a_holding_fence_leaves_the_writes_own_errors(store: Store, key_prefix: str) -> None:
    fenced = store.fenced(await fence_on(store, key_prefix))
    key = key_prefix + "obj"
    revision = await store.create(key, b"v1")
    current = await store.update(key, b"v2", expected_revision=revision)

    with pytest.raises(AlreadyExistsError):
        await fenced.create(key, b"again")
    with pytest.raises(ConflictError) as conflict:
        await fenced.update(key, b"stale", expected_revision=revision)
    assert conflict.value.actual_revision == current
    with pytest.raises(ConflictError):
        await fenced.update_many([(key, b"stale", revision)])
    with pytest.raises(NotFoundError):
        await fenced.delete(key_prefix + "missing")


async def test_unfenced_writes_ignore_the_fence(store: Store, key_prefix: str) -> None:
    fence = await fence_on(store, key_prefix)
    await depose(store, fence)

    revision = await store.create(key_prefix + "obj", b"api write")

    assert (await store.get(key_prefix + "obj")) == KeyValue(key_prefix + "obj", b"api write", revision, revision)


async def test_a_fenced_view_reads_and_watches_like_its_store(store: Store, key_prefix: str) -> None:
    fenced = store.fenced(await fence_on(store, key_prefix))
    revision = await store.create(key_prefix + "obj", b"v")

    page = await fenced.list(key_prefix)
    assert [kv.key for kv in page.items] == [key_prefix + "leader", key_prefix + "obj"]
    assert await fenced.current_revision() == revision
    events = fenced.watch(key_prefix + "obj", start_revision=revision)
    async with asyncio.timeout(10):
        event = await anext(events)
    await events.aclose()
    assert (event.key, event.value, event.revision) == (key_prefix + "obj", b"v", revision)


async def test_closing_a_fenced_view_leaves_the_store_open(store: Store, key_prefix: str) -> None:
    fenced = store.fenced(await fence_on(store, key_prefix))

    await fenced.close()

    assert await store.create(key_prefix + "after", b"") > 0
    assert await fenced.create(key_prefix + "fenced-after", b"") > 0


async def test_leases_work_through_a_fenced_view(store: Store, key_prefix: str) -> None:
    fenced = store.fenced(await fence_on(store, key_prefix))
    lease = await fenced.grant_lease(30)
    await fenced.create(key_prefix + "leased", b"", lease=lease)
    assert await fenced.refresh_lease(lease) > 0

    await fenced.revoke_lease(lease)

    assert await store.get(key_prefix + "leased") is None


async def test_concurrent_fenced_writers_only_the_current_term_lands(store: Store, key_prefix: str) -> None:
    """Two leaders race one object: the deposed one's writes never land, whatever the order."""
    old = await fence_on(store, key_prefix)
    new = Fence(old.key, await depose(store, old))
    key = key_prefix + "replicas"
    revision = await store.create(key, b"3")
    stale, current = store.fenced(old), store.fenced(new)

    results = await asyncio.gather(
        *(stale.update(key, b"5", expected_revision=revision) for _ in range(3)),
        current.update(key, b"1", expected_revision=revision),
        return_exceptions=True,
    )

    assert all(isinstance(r, FencedError) for r in results[:3])
    assert isinstance(results[3], int)
    kv = await store.get(key)
    assert kv is not None and kv.value == b"1"
