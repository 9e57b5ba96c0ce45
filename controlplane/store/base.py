"""The storage boundary: plain data types and the `Store` protocol.

A `Store` is a revisioned key-value store with etcd's semantics: one global
revision counter bumped by every write, per-key ``create_revision`` and
``mod_revision``, compare-and-swap writes, consistent snapshot reads at a past
revision, and watches that replay history from a revision on. Two
implementations exist: `controlplane.store.etcd.EtcdStore` (the real one) and
`controlplane.store.memory.MemoryStore` (an in-memory twin for tests); one
contract suite (``tests/contract/test_store.py``) runs against both.

Leases are etcd's: a lease lives ``ttl`` seconds unless refreshed, and every
key created with it is deleted when it expires or is revoked (leader election
binds its key to one). ``fenced(fence)`` gives a view whose every write also
compares a fence key's create_revision in the same transaction, so a write
from a deposed leader is refused by the store itself (`FencedError`), however
late it arrives.

Errors are those of `controlplane.store.errors`.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class KeyValue:
    """A key, its value and its revisions."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int


@dataclass(frozen=True)
class ListPage:
    """One page of a prefix listing.

    ``revision`` is the snapshot revision the page was read at: pass it back
    to `Store.list` for the next pages so that all pages are consistent, and
    to `Store.watch` (plus one) to follow changes after the listing.
    """

    items: list[KeyValue]
    revision: int
    more: bool


# The most writes `Store.update_many` takes (etcd's default --max-txn-ops is 128,
# and each item needs two compares).
MAX_BATCH = 64


@dataclass(frozen=True)
class Fence:
    """A write precondition: ``key`` still exists with this ``create_revision``.

    The leader's term: the election key and the revision it was created at.
    A new leader creates the key anew, so its create_revision differs, and
    every write fenced with the old term fails.
    """

    key: str
    revision: int


class EventType(enum.Enum):
    """Kind of change reported by a watch."""

    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True)
class WatchEvent:
    """One change to one key.

    ``revision`` is the mod_revision of this change (for a DELETE, the
    revision of the delete); ``value`` is ``b""`` and ``create_revision`` is 0
    for a DELETE; ``prev_value`` is the value before the change, or None when
    there was none (creation) or it has been compacted away.
    """

    type: EventType
    key: str
    value: bytes
    revision: int
    create_revision: int
    prev_value: bytes | None


class Store(Protocol):
    """Revisioned key-value storage with compare-and-swap and watches."""

    async def get(self, key: str) -> KeyValue | None:
        """The key's current value and revisions, or None when absent."""
        ...

    async def create(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        """Create the key if absent; return the new revision.

        With ``lease`` (an id from `grant_lease`) the key is deleted when the
        lease expires or is revoked. Raises `AlreadyExistsError` when the key
        exists and `LeaseNotFoundError` when the lease does not.
        """
        ...

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        """Replace the value if the key's mod_revision is ``expected_revision``.

        Returns the new revision. Raises `NotFoundError` when the key is
        absent and `ConflictError` when its mod_revision differs.
        """
        ...

    async def update_many(self, items: Sequence[tuple[str, bytes, int]]) -> int:
        """Replace several values at once, each only if its key is at the given
        revision: all or nothing, in one revision (returned). `ConflictError` when
        any key moved or no longer exists; at most MAX_BATCH items."""
        ...

    async def delete(self, key: str, *, expected_revision: int | None = None) -> int:
        """Delete the key (only at ``expected_revision`` when given).

        Returns the revision of the delete. Raises `NotFoundError` when the
        key is absent and `ConflictError` when its mod_revision differs.
        """
        ...

    async def list(
        self,
        prefix: str,
        *,
        limit: int = 500,
        start_after: str | None = None,
        revision: int | None = None,
    ) -> ListPage:
        """Keys starting with ``prefix`` and greater than ``start_after``.

        At most ``limit`` (>= 1) items sorted by key, read at the snapshot
        ``revision`` (None: the current one). ``more`` is True when more keys
        follow. Raises `CompactedError` when ``revision`` was compacted.
        """
        ...

    async def current_revision(self) -> int:
        """The store's current (latest) revision."""
        ...

    async def grant_lease(self, ttl: int) -> int:
        """A new lease living ``ttl`` seconds (>= 1) unless refreshed; its id."""
        ...

    async def refresh_lease(self, lease: int) -> int:
        """Restart the lease's time to live; return it (seconds).

        Raises `LeaseNotFoundError` when the lease has expired or was revoked.
        """
        ...

    async def revoke_lease(self, lease: int) -> None:
        """End the lease now, deleting its keys (in one revision). A lease
        already gone is not an error."""
        ...

    def fenced(self, fence: Fence) -> Store:
        """A view of this store whose writes (create, update, update_many,
        delete) succeed only while ``fence.key`` exists with create_revision
        ``fence.revision``, checked in the same transaction as the write.

        A failed fence raises `FencedError` (before any other precondition is
        reported) and writes nothing. Reads, watches and leases pass through.
        The view shares the store's connection: closing it does nothing,
        closing the store ends both.
        """
        ...

    def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchEvent, None]:
        """Every change to keys with ``prefix`` at revision >= ``start_revision``.

        ``start_revision`` must be >= 1; a revision in the past replays
        history, one in the future waits for it. Events come in revision
        order, forever, until the consumer stops iterating: close the
        generator (``async with contextlib.aclosing(...)``) to cancel the
        underlying watch promptly; one merely dropped after a ``break`` is
        closed later by the event loop's finalizer. (A generator rather than
        just an ``AsyncIterator`` so that ``aclose()`` is typed.)

        Raises `CompactedError` on the first iteration when ``start_revision``
        is compacted (re-list, then watch from the list's revision + 1), and
        `UnavailableError` when the connection is lost. Iteration ends when
        the store is closed.
        """
        ...

    async def compact(self, revision: int) -> None:
        """Drop history below ``revision`` (etcd compaction).

        Raises `CompactedError` when ``revision`` is not above the current
        compaction revision (etcd's behaviour).
        """
        ...

    async def close(self) -> None:
        """Release connections; open watches end."""
        ...
