"""`MemoryStore`: an in-memory twin of `EtcdStore` with etcd's semantics.

It keeps a small MVCC history, like etcd: every key has its list of versions
(a tombstone marks a delete), one global revision counter starts at 1 (as a
fresh etcd reports) and is bumped once per write, reads can be made at any
revision not yet compacted, and an event log feeds watches from past
revisions. ``compact(rev)`` drops what etcd drops: every version superseded at
or before ``rev`` and every event below ``rev`` (plus a delete *at* ``rev``,
whose tombstone etcd removes too).

Leases expire on the store's ``clock`` (``time.monotonic`` by default; tests
pass a `ManualClock` and drive it): an expired lease is noticed at the start
of the next call (or `expire_leases`), and its keys are deleted in one
revision, as etcd does.

Pure asyncio, no threads: watchers get events through unbounded asyncio
queues, fed synchronously by the writer. No call awaits between its checks
and its write, so every write (fenced or not) is atomic, like an etcd
transaction.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field, replace

from controlplane.store.backlog import WatchBacklog
from controlplane.store.base import MAX_BATCH, EventType, Fence, KeyValue, ListPage, Store, WatchEvent
from controlplane.store.errors import (
    AlreadyExistsError,
    CompactedError,
    ConflictError,
    FencedError,
    LeaseNotFoundError,
    NotFoundError,
    StoreError,
)

__all__ = ["ManualClock", "MemoryStore"]

_FIRST_LEASE_ID = 0x694D0001  # etcd's ids are opaque int64s; these just count up


class ManualClock:
    """A clock that moves only when told to (for lease expiry in tests)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class _Lease:
    ttl: int
    expires_at: float
    keys: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Version:
    """One version of a key; ``value`` None is a tombstone (a delete)."""

    revision: int
    value: bytes | None
    create_revision: int


class _Subscriber:
    """A watcher: its prefix and the queue the writer feeds (None = closed)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.queue = WatchBacklog()  # WatchEvents; None: closed


class MemoryStore:
    """An in-memory `Store` with etcd's revision, CAS, compaction and watch semantics."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._leases: dict[int, _Lease] = {}
        self._key_lease: dict[str, int] = {}
        self._next_lease = _FIRST_LEASE_ID
        self._revision = 1
        self._compact_revision = 0
        self._versions: dict[str, list[_Version]] = {}
        self._keys: list[str] = []  # sorted; every key with retained history
        self._events: list[WatchEvent] = []  # revision order
        self._subscribers: set[_Subscriber] = set()
        self._closed = False

    # -- reads ------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        """The key's current value and revisions, or None when absent."""
        self._begin()
        return self._read(key, self._revision)

    async def list(
        self,
        prefix: str,
        *,
        limit: int = 500,
        start_after: str | None = None,
        revision: int | None = None,
    ) -> ListPage:
        """A page of keys with ``prefix`` (after ``start_after``) at ``revision``."""
        self._begin()
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        at = self._check_readable(revision)
        items: list[KeyValue] = []
        more = False
        for key in self._keys_from(prefix, start_after):
            kv = self._read(key, at)
            if kv is None:
                continue
            if len(items) == limit:
                more = True
                break
            items.append(kv)
        return ListPage(items=items, revision=at, more=more)

    async def current_revision(self) -> int:
        """The latest revision."""
        self._begin()
        return self._revision

    # -- writes -----------------------------------------------------------

    async def create(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        """Create the key if absent; `AlreadyExistsError` otherwise."""
        return self._create(key, value, lease=lease, fence=None)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        """Replace the value if the key is at ``expected_revision``."""
        return self._update(key, value, expected_revision=expected_revision, fence=None)

    async def update_many(self, items: Sequence[tuple[str, bytes, int]]) -> int:
        """All-or-nothing CAS of several keys, written at one revision."""
        return self._update_many(items, fence=None)

    async def delete(self, key: str, *, expected_revision: int | None = None) -> int:
        """Delete the key (only at ``expected_revision`` when given)."""
        return self._delete(key, expected_revision=expected_revision, fence=None)

    def fenced(self, fence: Fence) -> Store:
        """A view whose writes hold only while ``fence`` does."""
        return _FencedMemoryStore(self, fence)

    # -- leases -----------------------------------------------------------

    async def grant_lease(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds on this store's clock."""
        self._begin()
        if ttl < 1:
            raise ValueError(f"lease ttl must be >= 1 second, got {ttl}")
        lease = self._next_lease
        self._next_lease += 1
        self._leases[lease] = _Lease(ttl=ttl, expires_at=self._clock() + ttl)
        return lease

    async def refresh_lease(self, lease: int) -> int:
        """Restart the lease's ttl; `LeaseNotFoundError` when it is gone."""
        self._begin()
        held = self._lease(lease)
        held.expires_at = self._clock() + held.ttl
        return held.ttl

    async def revoke_lease(self, lease: int) -> None:
        """End the lease and delete its keys; a lease already gone is fine."""
        self._begin()
        if lease in self._leases:
            self._end_lease(lease)

    def expire_leases(self) -> None:
        """End every lease whose time is up on the clock (every call does this first)."""
        now = self._clock()
        for lease in [lease for lease, held in self._leases.items() if held.expires_at <= now]:
            self._end_lease(lease)

    # -- writes, optionally fenced ----------------------------------------

    def _create(self, key: str, value: bytes, *, lease: int | None, fence: Fence | None) -> int:
        self._begin()
        self._check_fence(fence, key)
        if lease is not None:
            self._lease(lease)
        if self._read(key, self._revision) is not None:
            raise AlreadyExistsError(key)
        revision = self._write(key, value, prev=None)
        if lease is not None:
            self._leases[lease].keys.add(key)
            self._key_lease[key] = lease
        return revision

    def _update(self, key: str, value: bytes, *, expected_revision: int, fence: Fence | None) -> int:
        self._begin()
        self._check_fence(fence, key)
        prev = self._expect(key, expected_revision)
        return self._write(key, value, prev=prev)

    def _delete(self, key: str, *, expected_revision: int | None, fence: Fence | None) -> int:
        self._begin()
        self._check_fence(fence, key)
        prev = self._expect(key, expected_revision)
        return self._write(key, None, prev=prev)

    def _update_many(self, items: Sequence[tuple[str, bytes, int]], *, fence: Fence | None) -> int:
        self._begin()
        if not 0 < len(items) <= MAX_BATCH:
            raise ValueError(f"update_many takes 1 to {MAX_BATCH} items, got {len(items)}")
        self._check_fence(fence, items[0][0] if len(items) == 1 else f"{len(items)} keys")
        try:
            prevs = [self._expect(key, expected) for key, _, expected in items]
        except NotFoundError as e:
            raise ConflictError(e.key, 0, 0) from e
        self._revision += 1
        for (key, value, _), prev in zip(items, prevs, strict=True):
            self._write(key, value, prev=prev, revision=self._revision)
        return self._revision

    async def compact(self, revision: int) -> None:
        """Drop history superseded at or before ``revision``."""
        self._begin()
        if revision <= self._compact_revision:
            raise CompactedError(revision, self._compact_revision)
        if revision > self._revision:
            raise StoreError(f"cannot compact at future revision {revision} (current {self._revision})")
        self._compact_revision = revision
        self._compact_versions(revision)
        self._compact_events(revision)

    # -- watch ------------------------------------------------------------

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchEvent, None]:
        """Every change under ``prefix`` from ``start_revision`` on, forever."""
        self._begin()
        if start_revision < 1:
            raise ValueError(f"start_revision must be >= 1, got {start_revision}")
        if start_revision < self._compact_revision:
            raise CompactedError(start_revision, self._compact_revision)
        # Subscribing and snapshotting history happen with no await in
        # between, so the replay and the live queue neither overlap nor gap.
        subscriber = _Subscriber(prefix)
        self._subscribers.add(subscriber)
        backlog = self._history(prefix, start_revision)
        try:
            for past in backlog:
                yield past
            while (live := await subscriber.queue.get()) is not None:
                if isinstance(live, StoreError):
                    raise live
                if live.revision >= start_revision:  # a start in the future waits
                    yield live
        finally:
            self._subscribers.discard(subscriber)

    async def close(self) -> None:
        """End every open watch; later calls raise `StoreError`."""
        self._closed = True
        for subscriber in self._subscribers:
            subscriber.queue.put_nowait(None)
        self._subscribers.clear()

    # -- internals --------------------------------------------------------

    def _begin(self) -> None:
        """Every call starts here: refuse when closed, then end expired leases."""
        if self._closed:
            raise StoreError("store is closed")
        self.expire_leases()

    def _check_fence(self, fence: Fence | None, key: str) -> None:
        if fence is None:
            return
        current = self._read(fence.key, self._revision)
        actual = current.create_revision if current is not None else 0
        if actual != fence.revision:
            raise FencedError(key, fence.key, fence.revision, actual)

    def _lease(self, lease: int) -> _Lease:
        held = self._leases.get(lease)
        if held is None:
            raise LeaseNotFoundError(lease)
        return held

    def _end_lease(self, lease: int) -> None:
        """Forget the lease and delete its keys, all at one new revision."""
        held = self._leases.pop(lease)
        live = [(key, kv) for key in sorted(held.keys) if (kv := self._read(key, self._revision)) is not None]
        if not live:
            return
        self._revision += 1
        for key, kv in live:
            self._write(key, None, prev=kv, revision=self._revision)

    def _check_readable(self, revision: int | None) -> int:
        if revision is None or revision == 0:
            return self._revision
        if revision < self._compact_revision:
            raise CompactedError(revision, self._compact_revision)
        if revision > self._revision:
            raise StoreError(f"revision {revision} is a future revision (current {self._revision})")
        return revision

    def _read(self, key: str, at: int) -> KeyValue | None:
        """The key as of revision ``at``, or None when absent then."""
        versions = self._versions.get(key, [])
        index = bisect.bisect_right(versions, at, key=lambda v: v.revision) - 1
        if index < 0 or versions[index].value is None:
            return None
        version = versions[index]
        assert version.value is not None
        return KeyValue(key, version.value, version.create_revision, version.revision)

    def _keys_from(self, prefix: str, start_after: str | None) -> Sequence[str]:
        """Known keys with ``prefix`` that sort after ``start_after``."""
        lo = bisect.bisect_left(self._keys, prefix)
        if start_after is not None:
            lo = max(lo, bisect.bisect_right(self._keys, start_after))
        keys: list[str] = []
        for key in self._keys[lo:]:
            if not key.startswith(prefix):
                break
            keys.append(key)
        return keys

    def _expect(self, key: str, expected_revision: int | None) -> KeyValue:
        """The current key, checked against ``expected_revision``."""
        current = self._read(key, self._revision)
        if current is None:
            raise NotFoundError(key)
        if expected_revision is not None and current.mod_revision != expected_revision:
            raise ConflictError(key, expected_revision, current.mod_revision)
        return current

    def _write(self, key: str, value: bytes | None, *, prev: KeyValue | None, revision: int | None = None) -> int:
        """Record a put (``value``) or delete (None) at the next revision (or at
        ``revision``, already taken, for the writes of one transaction)."""
        if revision is None:
            self._revision += 1
            revision = self._revision
        lease = self._key_lease.pop(key, None)
        if lease is not None and lease in self._leases:  # a put without the lease detaches it, as in etcd
            self._leases[lease].keys.discard(key)
        create_revision = 0 if value is None else (prev.create_revision if prev else revision)
        if key not in self._versions:
            self._versions[key] = []
            bisect.insort(self._keys, key)
        self._versions[key].append(_Version(revision, value, create_revision))
        event = WatchEvent(
            type=EventType.DELETE if value is None else EventType.PUT,
            key=key,
            value=b"" if value is None else value,
            revision=revision,
            create_revision=create_revision,
            prev_value=prev.value if prev else None,
        )
        self._events.append(event)
        self._publish(event)
        return revision

    def _publish(self, event: WatchEvent) -> None:
        for subscriber in self._subscribers:
            if event.key.startswith(subscriber.prefix):
                subscriber.queue.put_nowait(event, len(event.value) + len(event.prev_value or b""))

    def _history(self, prefix: str, start_revision: int) -> Sequence[WatchEvent]:
        start = bisect.bisect_left(self._events, start_revision, key=lambda e: e.revision)
        return [e for e in self._events[start:] if e.key.startswith(prefix)]

    def _compact_versions(self, revision: int) -> None:
        """Keep, per key, the versions after ``revision`` and the last one at or before it.

        That last one goes too when it is a tombstone (the key was absent at
        ``revision``), and a key left with no version is forgotten.
        """
        for key in list(self._versions):
            versions = self._versions[key]
            index = bisect.bisect_right(versions, revision, key=lambda v: v.revision) - 1
            if index < 0:
                continue
            keep_from = index + 1 if versions[index].value is None else index
            self._versions[key] = versions = versions[keep_from:]
            if not versions:
                del self._versions[key]
                self._keys.remove(key)

    def _compact_events(self, revision: int) -> None:
        """Drop events below ``revision``; the one at ``revision`` loses what is gone.

        As in etcd, a delete at ``revision`` disappears with its tombstone, and
        a put at ``revision`` no longer knows its previous value.
        """
        start = bisect.bisect_left(self._events, revision, key=lambda e: e.revision)
        events = self._events[start:]
        if events and events[0].revision == revision:
            first = events[0]
            if first.type is EventType.DELETE:
                events = events[1:]
            else:
                events[0] = replace(first, prev_value=None)
        self._events = events


class _FencedMemoryStore:
    """`MemoryStore.fenced`: the same store, every write checked against a fence."""

    def __init__(self, base: MemoryStore, fence: Fence) -> None:
        self._base = base
        self._fence = fence

    async def get(self, key: str) -> KeyValue | None:
        return await self._base.get(key)

    async def list(
        self,
        prefix: str,
        *,
        limit: int = 500,
        start_after: str | None = None,
        revision: int | None = None,
    ) -> ListPage:
        return await self._base.list(prefix, limit=limit, start_after=start_after, revision=revision)

    async def current_revision(self) -> int:
        return await self._base.current_revision()

    def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchEvent, None]:
        return self._base.watch(prefix, start_revision=start_revision)

    async def create(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        return self._base._create(key, value, lease=lease, fence=self._fence)

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        return self._base._update(key, value, expected_revision=expected_revision, fence=self._fence)

    async def update_many(self, items: Sequence[tuple[str, bytes, int]]) -> int:
        return self._base._update_many(items, fence=self._fence)

    async def delete(self, key: str, *, expected_revision: int | None = None) -> int:
        return self._base._delete(key, expected_revision=expected_revision, fence=self._fence)

    async def grant_lease(self, ttl: int) -> int:
        return await self._base.grant_lease(ttl)

    async def refresh_lease(self, lease: int) -> int:
        return await self._base.refresh_lease(lease)

    async def revoke_lease(self, lease: int) -> None:
        await self._base.revoke_lease(lease)

    def fenced(self, fence: Fence) -> Store:
        return _FencedMemoryStore(self._base, fence)

    async def compact(self, revision: int) -> None:
        await self._base.compact(revision)

    async def close(self) -> None:
        """A view owns nothing: closing the base store ends it."""
