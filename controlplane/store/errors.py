"""Errors raised at the storage boundary.

Every `Store` implementation raises only these (backend exceptions are
translated, with the original kept as ``__cause__``)::

    StoreError                      base; ``temporary`` says whether retrying
    │                               the same call later may succeed
    ├── NotFoundError(key)          the key does not exist
    ├── AlreadyExistsError(key)     create() of a key that exists
    ├── ConflictError(key, expected_revision, actual_revision)
    │                               compare-and-swap lost: the key's
    │                               mod_revision is not the expected one
    │                               (actual_revision is 0 when the key is gone)
    ├── CompactedError(requested_revision, compact_revision)
    │                               the revision asked for (list snapshot or
    │                               watch start) was compacted away: re-list
    ├── WatchOverflowError(events, size)
    │                               a watch's reader fell too far behind; the
    │                               watch was ended: re-list
    ├── FencedError(key, fence)     a fenced write refused: the fence key is
    │                               gone or was created again (another leader's
    │                               term); never retry, step down
    ├── LeaseNotFoundError(lease)   the lease expired or was revoked
    ├── DecryptionError(key, reason) a value encrypted at rest cannot be read:
    │                               another key (secrets.key) or a corrupt value
    ├── DatabaseFullError(detail)   etcd's database reached its quota (NOSPACE
    │                               alarm): writes are refused until an operator
    │                               frees space; reads still work
    └── UnavailableError(message)   temporary: connection refused or lost,
                                    deadline exceeded, backend unreachable

`EmbeddedEtcdError` (starting or stopping the embedded etcd process) is not a
store error: it is about running etcd, not about talking to it.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every error raised by a `Store`."""

    temporary: bool = False


class NotFoundError(StoreError):
    """The key does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key!r}")
        self.key = key


class AlreadyExistsError(StoreError):
    """`create()` was called for a key that already exists."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key already exists: {key!r}")
        self.key = key


class ConflictError(StoreError):
    """A compare-and-swap failed: the key changed since it was read."""

    def __init__(self, key: str, expected_revision: int, actual_revision: int) -> None:
        super().__init__(
            f"conflict on {key!r}: expected mod_revision {expected_revision}, "
            f"found {actual_revision if actual_revision else 'no key'}"
        )
        self.key = key
        self.expected_revision = expected_revision
        self.actual_revision = actual_revision


class CompactedError(StoreError):
    """The requested revision is older than the compaction revision.

    ``compact_revision`` is 0 when the backend did not say (etcd's range error
    does not carry it; its watch error does).
    """

    def __init__(self, requested_revision: int, compact_revision: int) -> None:
        below = f" (compacted up to {compact_revision})" if compact_revision else ""
        super().__init__(f"revision {requested_revision} has been compacted{below}")
        self.requested_revision = requested_revision
        self.compact_revision = compact_revision


class WatchOverflowError(StoreError):
    """A watch's reader fell so far behind that the events waiting for it passed the bound."""

    def __init__(self, events: int, size: int) -> None:
        super().__init__(f"watch ended: {events} events ({size} bytes) waited for its reader; list again")
        self.events = events
        self.size = size


class FencedError(StoreError):
    """A fenced write was refused: the fence no longer holds.

    ``fence_key`` and ``fence_revision`` are the fence that failed;
    ``actual_revision`` is the fence key's create_revision now (0 when gone).
    Not temporary: the writer has lost its term and must stop, not retry.
    """

    def __init__(self, key: str, fence_key: str, fence_revision: int, actual_revision: int) -> None:
        now = f"created at {actual_revision}" if actual_revision else "gone"
        super().__init__(f"write to {key!r} fenced: {fence_key!r} was expected created at {fence_revision}, is {now}")
        self.key = key
        self.fence_key = fence_key
        self.fence_revision = fence_revision
        self.actual_revision = actual_revision


class LeaseNotFoundError(StoreError):
    """The lease does not exist (any more): it expired or was revoked."""

    def __init__(self, lease: int) -> None:
        super().__init__(f"lease {lease:x} not found (expired or revoked)")
        self.lease = lease


class DecryptionError(StoreError):
    """A value encrypted at rest cannot be decrypted (wrong key, or tampered with).

    Not temporary: the same key gives the same answer until the operator
    restores the right ``secrets.key``.
    """

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"cannot decrypt {key!r}: {reason}")
        self.key = key
        self.reason = reason


class DatabaseFullError(StoreError):
    """etcd refuses writes: its database reached its space quota (the NOSPACE alarm).

    Not temporary: the alarm stays raised until an operator frees space and
    disarms it, or gives etcd a larger quota. ``detail`` is etcd's own message.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"the etcd database is full ({detail}): etcd refuses writes until space is freed. "
            "Compact its history, defragment it and disarm the NOSPACE alarm "
            "(etcdctl compact, etcdctl defrag, etcdctl alarm disarm), or restart etcd with a larger "
            '--quota-backend-bytes; see "The etcd database is full" in docs/operations.md'
        )
        self.detail = detail


class UnavailableError(StoreError):
    """The backend cannot be reached right now; retry later."""

    temporary = True

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EmbeddedEtcdError(Exception):
    """The embedded etcd could not be found, started or stopped."""
