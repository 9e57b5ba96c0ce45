"""`EtcdStore`: the `Store` protocol over etcd v3, via aetcd.

This is the only module that imports aetcd (which has no type hints: its
``Any`` stays in here). Every aetcd/gRPC exception is translated to the
`controlplane.store.errors` tree in one place, `_translate`, always with
``raise ... from``.

How each operation maps to etcd:

- get, list, current_revision: a raw ``KV.Range`` (aetcd's wrappers expose
  neither ``limit`` nor ``revision``). Pages use ``limit`` so a response stays
  under gRPC's 4 MiB receive cap; should a page still be too large (big
  values), it is fetched again with half the limit.
- create, update: creates (and updates) issued in the same turn of the event
  loop are group committed (`controlplane.store.group_commit`): one
  transaction comparing ``create_revision == 0`` (``mod_revision ==
  expected``) for each key, at most MAX_BATCH keys and 1 MiB of values; when
  a compare fails, each write is retried on its own so only that one fails.
  A create with a lease is always on its own.
- create / update / delete: one transaction comparing ``create_revision``
  (existence) and ``mod_revision`` (CAS); on failure a ``get`` in the same
  transaction tells NotFound from Conflict. The returned revision is the one
  in the response header of the write.
- fenced writes (`EtcdStore.fenced`): the same transactions with one more
  compare, ``create_revision(fence key) == fence revision``, and a ``get`` of
  the fence key among the failure ops, which tells `FencedError` from the
  write's own precondition.
- leases: LeaseGrant, one-shot LeaseKeepAlive, LeaseRevoke; ``create`` with a
  lease puts the key with it inside the create-if-absent transaction.
- maintenance, beside the protocol: snapshot, member_status (Status, Alarm), hash_kv
  (HashKV, the consistency check of the crash tests).
- watch: one aetcd ``Watcher`` (one gRPC stream) per connection, each watch a
  callback feeding a queue, with ``prev_kv``. A compacted start revision
  arrives as ``RevisionCompactedError`` right after the watch is created, so
  the first iteration raises `CompactedError`.
- a full database (etcd's NOSPACE alarm: "mvcc: database space exceeded"):
  writes and lease grants raise `DatabaseFullError` (permanent), logged once as
  ``etcd_database_full`` until a write succeeds again (``etcd_database_writable``).

Several endpoints (members of one cluster): aetcd dials one host, so the
connection talks to one endpoint at a time and moves to the next when a call
to it fails as unavailable (refused, lost, deadline exceeded, no leader).
Reads then retry on the next endpoints; writes raise `UnavailableError` (a
write that timed out may have been applied: the caller re-reads), and open
watches end with `UnavailableError` (the caller re-lists).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aetcd  # type: ignore[import-untyped, unused-ignore]
import structlog

from controlplane.store.backlog import WatchBacklog
from controlplane.store.base import MAX_BATCH, EventType, Fence, KeyValue, ListPage, Store, WatchEvent
from controlplane.store.errors import (
    AlreadyExistsError,
    CompactedError,
    ConflictError,
    DatabaseFullError,
    FencedError,
    LeaseNotFoundError,
    NotFoundError,
    StoreError,
    UnavailableError,
)
from controlplane.store.group_commit import GroupCommit, PendingWrite

__all__ = ["EtcdStore", "MemberStatus"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

_rpc: Any = aetcd.rpc
_StatusCode: Any = _rpc.StatusCode

# Exceptions that come from talking to etcd (anything else is a bug, not
# translated).
_BACKEND_ERRORS: tuple[type[BaseException], ...] = (
    aetcd.ClientError,
    _rpc.RpcError,
    TimeoutError,
    OSError,
)

_TEMPORARY_CODES = frozenset({_StatusCode.UNAVAILABLE, _StatusCode.DEADLINE_EXCEEDED, _StatusCode.CANCELLED})
_TEMPORARY_CLIENT_ERRORS: tuple[type[BaseException], ...] = (
    aetcd.ConnectionFailedError,
    aetcd.ConnectionTimeoutError,
    aetcd.WatchTimeoutError,
    TimeoutError,
    OSError,
)
_TOO_MANY_REQUESTS = "too many requests"  # etcd's RESOURCE_EXHAUSTED back-pressure
_COMPACTED_MESSAGE = "required revision has been compacted"
_NOSPACE_MESSAGE = "database space exceeded"  # etcd's NOSPACE alarm (RESOURCE_EXHAUSTED, permanent)
# Values in one group-committed transaction (etcd refuses requests over 1.5 MiB by default).
_BATCH_BYTES = 1024 * 1024
_LEASE_NOT_FOUND_MESSAGE = "requested lease not found"

# Keepalives detect a half-open connection under an idle watch (etcd permits
# pings every 5 s or more); short reconnect backoff so a restarted etcd is
# found again within a couple of seconds.
_CHANNEL_OPTIONS: dict[str, int] = {
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.http2.max_pings_without_data": 0,
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 2_000,
}


def _translate(exc: BaseException, *, revision: int | None = None, lease: int | None = None) -> StoreError:
    """The store error for an aetcd/gRPC exception (``revision``, ``lease``: the ones asked for)."""
    if isinstance(exc, aetcd.RevisionCompactedError):
        return CompactedError(revision or 0, int(exc.compacted_revision or 0))
    rpc_error = _rpc_error(exc)
    if rpc_error is not None:
        code, details = rpc_error.code(), str(rpc_error.details() or "")
        message = f"etcd {code.name}: {details}"
    else:
        code, details = None, str(exc)
        message = f"etcd: {details or type(exc).__name__}"
    if _COMPACTED_MESSAGE in details:
        return CompactedError(revision or 0, 0)  # etcd does not say up to where
    if _LEASE_NOT_FOUND_MESSAGE in details:
        return LeaseNotFoundError(lease or 0)
    if _NOSPACE_MESSAGE in details:
        return DatabaseFullError(message)
    temporary = (
        code in _TEMPORARY_CODES
        or (code == _StatusCode.RESOURCE_EXHAUSTED and _TOO_MANY_REQUESTS in details)
        or isinstance(exc, _TEMPORARY_CLIENT_ERRORS)
    )
    return UnavailableError(message) if temporary else StoreError(message)


def _rpc_error(exc: BaseException) -> Any:
    """The gRPC error itself, or the one aetcd wrapped in a ClientError, or None."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, _rpc.AioRpcError):
            return candidate
    return None


@contextlib.contextmanager
def _translated(*, revision: int | None = None, lease: int | None = None) -> Iterator[None]:
    """Re-raise backend exceptions as store errors."""
    try:
        yield
    except StoreError:
        raise
    except _BACKEND_ERRORS as exc:
        raise _translate(exc, revision=revision, lease=lease) from exc


def _encode(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


def _decode(key: bytes) -> str:
    # surrogateescape: a foreign non-UTF-8 key still round-trips.
    return key.decode("utf-8", "surrogateescape")


def _prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """``[start, end)`` covering every key that starts with ``prefix``."""
    start = _encode(prefix)
    end = bytearray(start.rstrip(b"\xff"))
    if not end:
        return (start or b"\0"), b"\0"  # everything from start on
    end[-1] += 1
    return start, bytes(end)


def _split_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``, optionally with ``http://``) to its parts."""
    hostport = endpoint.removeprefix("http://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"etcd endpoint must be 'host:port', got {endpoint!r}")
    return host, int(port)


def _to_kv(raw: Any) -> KeyValue:
    return KeyValue(
        key=_decode(bytes(raw.key)),
        value=bytes(raw.value),
        create_revision=int(raw.create_revision),
        mod_revision=int(raw.mod_revision),
    )


def _to_event(raw: Any) -> WatchEvent:
    """An aetcd watch event as a `WatchEvent`."""
    kv, prev = raw.kv, raw.prev_kv
    # aetcd wraps an absent prev_kv as an empty KeyValue, not None.
    prev_value = bytes(prev.value) if prev is not None and prev.mod_revision else None
    kind = EventType(str(raw.kind))
    deleted = kind is EventType.DELETE
    return WatchEvent(
        type=kind,
        key=_decode(bytes(kv.key)),
        value=b"" if deleted else bytes(kv.value),
        revision=int(kv.mod_revision),
        create_revision=0 if deleted else int(kv.create_revision),
        prev_value=prev_value,
    )


def _new_client(endpoint: str, timeout: float) -> Any:
    host, port = _split_endpoint(endpoint)
    return aetcd.Client(host=host, port=port, timeout=timeout, options=_CHANNEL_OPTIONS)


def _cancelling() -> bool:
    """Whether this task is being cancelled (rather than a call of it).

    grpc.aio ends the calls of a closed channel with `CancelledError` too: a
    failover closing the old endpoint's channel must not look like a cancel of
    every task that had a call on it (an informer would end silently).
    """
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _drop_result(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned task's outcome so asyncio does not log it."""
    if not task.cancelled():
        task.exception()


def _write_revision(response: Any) -> int:
    """The header revision of a put/delete response inside a transaction."""
    which = response.WhichOneof("response")
    return int(getattr(response, which).header.revision)


@dataclass(frozen=True)
class MemberStatus:
    """What an etcd member says of itself: its release, its database size, the cluster's alarms."""

    version: str
    db_size: int
    alarms: tuple[str, ...] = ()


@dataclass
class _OpenWatch:
    """A watch on ``watcher``; ``lost`` is set when a failover shuts the watcher down."""

    watcher: Any
    lost: asyncio.Event = field(default_factory=asyncio.Event)


class _Connection:
    """The client of the endpoint in use, its watch stream, and the open
    watches' inboxes; shared by a store and its fenced views."""

    def __init__(self, endpoints: list[str], timeout: float) -> None:
        self.endpoints = endpoints
        self.timeout = timeout
        self.index = 0
        self.client: Any = _new_client(endpoints[0], timeout)
        self.watcher: Any = None
        # Open watches (also while they register): each inbox and its watcher.
        self.inboxes: dict[WatchBacklog, _OpenWatch] = {}
        self.closed = False
        # etcd refused a write as full (NOSPACE) and no write has succeeded since: logged once.
        self.full = False

    @property
    def endpoint(self) -> str:
        return self.endpoints[self.index]

    async def ready(self) -> Any:
        """The client to use now, connected."""
        if self.closed:
            raise StoreError("store is closed")
        client = self.client
        with _translated():
            await client.connect()
        return client

    def watcher_for(self, client: Any) -> Any:
        """The aetcd watcher multiplexing the watches on ``client``'s channel.

        Ours rather than the client's: its callbacks feed plain queues, so a
        closed watch leaves no async generator for the loop to finalize.
        """
        if self.watcher is None:
            self.watcher = aetcd.Watcher(_rpc.WatchStub(client.channel), timeout=self.timeout, metadata=client.metadata)
        return self.watcher

    def refused_as_full(self, error: DatabaseFullError) -> None:
        """One log line when etcd starts refusing writes as full (not one per write)."""
        if not self.full:
            self.full = True
            log.error("etcd_database_full", endpoint=self.endpoint, message=str(error))

    def wrote(self) -> None:
        """A write was applied: after a full database, say it takes writes again."""
        if self.full:
            self.full = False
            log.info("etcd_database_writable", endpoint=self.endpoint)

    async def failover(self, failed: Any, error: StoreError) -> None:
        """Move to the next endpoint when ``failed`` is still the client in
        use (the first caller to see a failure moves, the others find it done)."""
        if len(self.endpoints) == 1 or self.closed or failed is not self.client:
            return
        old_endpoint, old_watcher = self.endpoint, self.watcher
        self.index = (self.index + 1) % len(self.endpoints)
        self.client, self.watcher = _new_client(self.endpoint, self.timeout), None
        log.warning("etcd_failover", failed=old_endpoint, next=self.endpoint, error=str(error))
        lost = UnavailableError(f"etcd endpoint {old_endpoint} failed: {error}")
        for inbox, watch in self.inboxes.items():
            if watch.watcher is old_watcher:
                inbox.put_nowait(lost)
                watch.lost.set()
        await self._close_client(failed, old_watcher, old_endpoint)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await self._close_client(self.client, self.watcher, self.endpoint)

    @staticmethod
    async def _close_client(client: Any, watcher: Any, endpoint: str) -> None:
        try:
            if watcher is not None:
                await watcher.shutdown()
            await client.close()
        except _BACKEND_ERRORS as exc:
            log.warning("error closing etcd client", endpoint=endpoint, error=str(exc))


class EtcdStore:
    """A `Store` backed by etcd v3. Create it with `EtcdStore.connect`."""

    def __init__(self, connection: _Connection, *, fence: Fence | None = None, owner: bool = True) -> None:
        self._conn = connection
        self._tx = aetcd.Transactions()
        self._fence = fence
        self._owner = owner
        self._creates = GroupCommit(self._create_batch, max_items=MAX_BATCH, max_bytes=_BATCH_BYTES)
        self._updates = GroupCommit(self._update_batch, max_items=MAX_BATCH, max_bytes=_BATCH_BYTES)
        self._deletes = GroupCommit(self._delete_batch, max_items=MAX_BATCH, max_bytes=_BATCH_BYTES)

    @property
    def endpoint(self) -> str:
        """The endpoint in use."""
        return self._conn.endpoint

    @classmethod
    async def connect(
        cls,
        endpoints: list[str],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the deadline of every RPC, not of this call
    ) -> EtcdStore:
        """Connect to ``endpoints`` ("host:port", members of one cluster),
        starting with the first that answers.

        ``timeout`` (seconds) bounds each request to etcd, then and later.
        Raises `UnavailableError` when no endpoint answers.
        """
        if not endpoints:
            raise ValueError("no etcd endpoints given")
        for endpoint in endpoints:
            _split_endpoint(endpoint)  # a malformed one is a usage error, not an outage
        store = cls(_Connection(list(endpoints), timeout))
        try:
            revision = await store.current_revision()
        except UnavailableError as exc:
            await store.close()
            raise UnavailableError(f"no etcd endpoint answered ({', '.join(endpoints)}): {exc}") from exc
        except BaseException:
            await store.close()
            raise
        log.info("connected to etcd", endpoint=store.endpoint, endpoints=len(endpoints), revision=revision)
        return store

    def fenced(self, fence: Fence) -> Store:
        """A view on the same connection whose writes compare ``fence``."""
        return EtcdStore(self._conn, fence=fence, owner=False)

    # -- reads ------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        """The key's current value and revisions, or None when absent."""
        response = await self._range(_rpc.RangeRequest(key=_encode(key)))
        return _to_kv(response.kvs[0]) if response.kvs else None

    async def list(
        self,
        prefix: str,
        *,
        limit: int = 500,
        start_after: str | None = None,
        revision: int | None = None,
    ) -> ListPage:
        """A page of keys with ``prefix`` (after ``start_after``) at ``revision``."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        start, end = _prefix_range(prefix)
        if start_after is not None:
            start = max(start, _encode(start_after) + b"\0")
        request = _rpc.RangeRequest(
            key=start,
            range_end=end,
            limit=limit,
            revision=revision or 0,
            sort_order=_rpc.RangeRequest.ASCEND,
            sort_target=_rpc.RangeRequest.KEY,
        )
        response = await self._range(request, revision=revision)
        return ListPage(
            items=[_to_kv(raw) for raw in response.kvs],
            # The header carries the *current* revision, not the one read at.
            revision=revision or int(response.header.revision),
            more=bool(response.more),
        )

    async def current_revision(self) -> int:
        """The store's current revision."""
        response = await self._range(_rpc.RangeRequest(key=b"\0", count_only=True))
        return int(response.header.revision)

    # -- writes -----------------------------------------------------------

    async def create(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        """Create the key if absent; `AlreadyExistsError` otherwise."""
        if lease is not None:
            return await self._create_one(key, value, lease=lease)
        return await self._creates.write(key, value)

    async def _create_batch(self, writes: Sequence[PendingWrite]) -> Sequence[int | BaseException]:
        """Group commit: every key created in one transaction, or each on its own when one exists."""
        if len(writes) == 1:
            try:
                return [await self._create_one(writes[0].key, writes[0].value)]
            except StoreError as exc:
                return [exc]
        keys = [_encode(w.key) for w in writes]
        succeeded, responses = await self._txn(
            compare=[self._tx.create(k) == 0 for k in keys],
            success=[self._tx.put(k, w.value) for k, w in zip(keys, writes, strict=True)],
            failure=[],
        )
        if succeeded:
            return [_write_revision(responses[0])] * len(writes)
        self._raise_if_fenced(f"{len(writes)} keys", responses)
        return await asyncio.gather(*(self._create_one(w.key, w.value) for w in writes), return_exceptions=True)

    async def _create_one(self, key: str, value: bytes, *, lease: int | None = None) -> int:
        k = _encode(key)
        succeeded, responses = await self._txn(
            compare=[self._tx.create(k) == 0],
            success=[self._tx.put(k, value, lease=lease)],
            failure=[],
            lease=lease,
        )
        if not succeeded:
            self._raise_if_fenced(key, responses)
            raise AlreadyExistsError(key)
        return _write_revision(responses[0])

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        """Replace the value if the key is at ``expected_revision``."""
        if expected_revision < 1:  # no existing key is at revision 0
            return await self._update_one(key, value, expected_revision=expected_revision)
        return await self._updates.write(key, value, expected_revision)

    async def _update_batch(self, writes: Sequence[PendingWrite]) -> Sequence[int | BaseException]:
        """Group commit: every key replaced in one transaction, or each on its own when one moved."""
        if len(writes) > 1:
            keys = [_encode(w.key) for w in writes]
            succeeded, responses = await self._txn(
                compare=[self._tx.mod(k) == w.expected for k, w in zip(keys, writes, strict=True)],
                success=[self._tx.put(k, w.value) for k, w in zip(keys, writes, strict=True)],
                failure=[],
            )
            if succeeded:
                return [_write_revision(responses[0])] * len(writes)
            self._raise_if_fenced(f"{len(writes)} keys", responses)
        return await asyncio.gather(
            *(self._update_one(w.key, w.value, expected_revision=w.expected) for w in writes), return_exceptions=True
        )

    async def _update_one(self, key: str, value: bytes, *, expected_revision: int) -> int:
        k = _encode(key)
        succeeded, responses = await self._txn(
            compare=[self._tx.create(k) > 0, self._tx.mod(k) == expected_revision],
            success=[self._tx.put(k, value)],
            failure=[self._tx.get(k)],
        )
        if not succeeded:
            self._raise_if_fenced(key, responses)
            raise self._cas_failure(key, expected_revision, responses)
        return _write_revision(responses[0])

    async def update_many(self, items: Sequence[tuple[str, bytes, int]]) -> int:
        """All-or-nothing CAS of several keys in one etcd transaction."""
        if not 0 < len(items) <= MAX_BATCH:
            raise ValueError(f"update_many takes 1 to {MAX_BATCH} items, got {len(items)}")
        what = items[0][0] if len(items) == 1 else f"{len(items)} keys"
        # One compare per key (a mod_revision >= 1 cannot match an absent
        # key), so MAX_BATCH keys and a fence stay within etcd's 128 compares.
        if any(expected < 1 for _, _, expected in items):
            raise ConflictError(what, 0, 0)
        compare = [self._tx.mod(_encode(key)) == expected for key, _, expected in items]
        succeeded, responses = await self._txn(
            compare=compare, success=[self._tx.put(_encode(key), value) for key, value, _ in items], failure=[]
        )
        if not succeeded:
            self._raise_if_fenced(what, responses)
            raise ConflictError(what, 0, 0)
        return _write_revision(responses[0])

    async def delete(self, key: str, *, expected_revision: int | None = None) -> int:
        """Delete the key (only at ``expected_revision`` when given). Deletes at a revision issued
        together are group-committed as updates are (a scale-down removes its pods so)."""
        if expected_revision is not None and expected_revision >= 1:
            return await self._deletes.write(key, b"", expected_revision)
        return await self._delete_one(key, expected_revision=expected_revision)

    async def _delete_batch(self, writes: Sequence[PendingWrite]) -> Sequence[int | BaseException]:
        """Group commit: every key deleted in one transaction, or each on its own when one moved."""
        if len(writes) > 1:
            keys = [_encode(w.key) for w in writes]
            succeeded, responses = await self._txn(
                compare=[self._tx.mod(k) == w.expected for k, w in zip(keys, writes, strict=True)],
                success=[self._tx.delete(k) for k in keys],
                failure=[],
            )
            if succeeded:
                return [_write_revision(responses[0])] * len(writes)
            self._raise_if_fenced(f"{len(writes)} keys", responses)
        return await asyncio.gather(
            *(self._delete_one(w.key, expected_revision=w.expected) for w in writes), return_exceptions=True
        )

    async def _delete_one(self, key: str, *, expected_revision: int | None) -> int:
        k = _encode(key)
        compare = [self._tx.create(k) > 0]
        if expected_revision is not None:
            compare.append(self._tx.mod(k) == expected_revision)
        succeeded, responses = await self._txn(compare=compare, success=[self._tx.delete(k)], failure=[self._tx.get(k)])
        if not succeeded:
            self._raise_if_fenced(key, responses)
            raise self._cas_failure(key, expected_revision or 0, responses)
        return _write_revision(responses[0])

    async def compact(self, revision: int) -> None:
        """Compact etcd's history below ``revision``.

        Logical compaction (not ``physical``): once this returns, reads and
        watches below ``revision`` fail; etcd frees the space in the background.
        """
        await self._call(lambda client: client.compact(revision, physical=False), revision=revision)

    # -- leases -----------------------------------------------------------

    async def grant_lease(self, ttl: int) -> int:
        """A new etcd lease of ``ttl`` seconds; its id."""
        if ttl < 1:
            raise ValueError(f"lease ttl must be >= 1 second, got {ttl}")
        granted = await self._call(lambda client: client.lease(ttl))
        return int(granted.id)

    async def refresh_lease(self, lease: int) -> int:
        """One keep-alive; the lease's ttl, or `LeaseNotFoundError`."""
        reply = await self._call(lambda client: client.refresh_lease(lease), lease=lease)
        if reply is None or int(reply.TTL) <= 0:  # etcd answers TTL 0 for a lease it does not know
            raise LeaseNotFoundError(lease)
        return int(reply.TTL)

    async def revoke_lease(self, lease: int) -> None:
        """Revoke the lease (its keys go); one already gone is fine."""
        try:
            await self._call(lambda client: client.revoke_lease(lease), lease=lease)
        except LeaseNotFoundError:
            return

    # -- watch ------------------------------------------------------------

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchEvent, None]:
        """Every change under ``prefix`` from ``start_revision`` on, forever."""
        if start_revision < 1:
            raise ValueError(f"start_revision must be >= 1, got {start_revision}")
        key, end = _prefix_range(prefix)
        # The watcher calls back with an event, an exception (compaction,
        # lost stream) or None (watcher shut down by close()); a failover
        # puts an UnavailableError.
        inbox = WatchBacklog()
        client = await self._conn.ready()
        watcher = self._conn.watcher_for(client)
        # Known before registering: a failover meanwhile marks this watch lost.
        watch = _OpenWatch(watcher)
        self._conn.inboxes[inbox] = watch
        callback: Any = None
        try:
            try:
                with _translated(revision=start_revision):
                    callback = await self._register_unless_lost(
                        watch, key, inbox.put, range_end=end, start_revision=start_revision, prev_kv=True
                    )
            except UnavailableError as exc:
                await self._conn.failover(client, exc)
                raise
            if callback is None or watcher is not self._conn.watcher:
                # The store moved to another endpoint while this watch was being
                # set up: its watcher is shut down and would never call back.
                raise UnavailableError(f"etcd endpoint changed while a watch on {prefix!r} was being set up")
            while (item := await inbox.get()) is not None:
                if isinstance(item, StoreError):
                    raise item
                if isinstance(item, BaseException):
                    error = _translate(item, revision=start_revision)
                    if isinstance(error, UnavailableError):
                        await self._conn.failover(client, error)
                    raise error from item
                yield _to_event(item)
        finally:
            self._conn.inboxes.pop(inbox, None)
            if callback is not None:
                await self._cancel_watch(watcher, callback.watch_id)

    # -- maintenance (etcd only, not part of the Store protocol) ----------

    async def snapshot(self, path: Path) -> int:
        """Write a consistent snapshot of etcd's database to ``path`` (via a
        temporary file beside it, renamed when complete); return its size.

        No deadline: a large database takes as long as it takes to stream.
        """
        partial = path.with_name(path.name + ".part")
        size = 0
        client = await self._conn.ready()
        with _translated():
            out = await asyncio.to_thread(partial.open, "wb")
            try:
                stream = client.maintenancestub.Snapshot(_rpc.SnapshotRequest(), metadata=client.metadata)
                async for chunk in stream:
                    await asyncio.to_thread(out.write, chunk.blob)
                    size += len(chunk.blob)
            finally:
                await asyncio.to_thread(out.close)
        await asyncio.to_thread(partial.replace, path)
        return size

    async def member_status(self) -> MemberStatus:
        """The answering member's release, database size and the cluster's alarms
        (Maintenance.Status and Alarm GET)."""
        reply = await self._call(
            lambda client: client.maintenancestub.Status(
                _rpc.StatusRequest(), timeout=self._conn.timeout, metadata=client.metadata
            ),
            retry=True,
        )
        alarms = await self._call(
            lambda client: client.maintenancestub.Alarm(
                _rpc.AlarmRequest(action=_rpc.AlarmRequest.AlarmAction.Value("GET")),
                timeout=self._conn.timeout,
                metadata=client.metadata,
            ),
            retry=True,
        )
        names = sorted({str(_rpc.AlarmType.Name(member.alarm)) for member in alarms.alarms})
        return MemberStatus(str(reply.version), int(reply.dbSize), tuple(names))

    async def server_version(self) -> str:
        """The etcd release of the member answering, e.g. ``3.4.23``."""
        return (await self.member_status()).version

    async def hash_kv(self, revision: int) -> int:
        """The answering member's hash of its key-value history up to ``revision``
        (Maintenance.HashKV): equal on members, and before and after a restart, when
        their data agree."""
        reply = await self._call(
            lambda client: client.maintenancestub.HashKV(
                _rpc.HashKVRequest(revision=revision), timeout=self._conn.timeout, metadata=client.metadata
            ),
            revision=revision,
        )
        return int(reply.hash)

    async def close(self) -> None:
        """Close the connection (a fenced view leaves it to its store); open watches end."""
        if self._owner:
            await self._conn.close()

    # -- internals --------------------------------------------------------

    async def _call(
        self,
        op: Callable[[Any], Awaitable[T]],
        *,
        retry: bool = False,
        revision: int | None = None,
        lease: int | None = None,
    ) -> T:
        """Run ``op(client)``, errors translated; on an unavailable endpoint,
        move to the next one, and with ``retry`` (reads) try it there too."""
        attempts = len(self._conn.endpoints) if retry else 1
        for attempt in range(attempts):
            client = await self._conn.ready()
            try:
                try:
                    with _translated(revision=revision, lease=lease):
                        return await op(client)
                except asyncio.CancelledError:
                    if _cancelling():
                        raise
                    # Not our cancel: a failover closed the channel this call was on.
                    raise UnavailableError("etcd call cancelled: the store moved to another endpoint") from None
            except DatabaseFullError as exc:
                self._conn.refused_as_full(exc)
                raise
            except UnavailableError as exc:
                await self._conn.failover(client, exc)
                if attempt + 1 == attempts:
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _range(self, request: Any, *, revision: int | None = None) -> Any:
        """``KV.Range``; halves ``limit`` while the response is over gRPC's cap."""

        async def op(client: Any) -> Any:
            while True:
                try:
                    return await client.kvstub.Range(request, timeout=self._conn.timeout, metadata=client.metadata)
                except _rpc.AioRpcError as exc:
                    if exc.code() != _StatusCode.RESOURCE_EXHAUSTED or request.limit <= 1:
                        raise
                    request.limit //= 2
                    log.warning("etcd range over the message cap, halving", limit=request.limit)

        return await self._call(op, retry=True, revision=revision)

    async def _txn(
        self, *, compare: Sequence[Any], success: Sequence[Any], failure: Sequence[Any], lease: int | None = None
    ) -> Any:
        """One transaction; a fenced view adds the fence compare and reads the
        fence key (last) when it fails."""
        if self._fence is not None:
            fence_key = _encode(self._fence.key)
            compare = [*compare, self._tx.create(fence_key) == self._fence.revision]
            failure = [*failure, self._tx.get(fence_key)]
        result = await self._call(
            lambda client: client.transaction(compare=compare, success=success, failure=failure), lease=lease
        )
        self._conn.wrote()
        return result

    def _raise_if_fenced(self, key: str, responses: Any) -> None:
        """`FencedError` when a failed transaction failed on the fence."""
        if self._fence is None:
            return
        found = responses[-1]
        actual = int(found[0][1].create_revision) if found else 0
        if actual != self._fence.revision:
            raise FencedError(key, self._fence.key, self._fence.revision, actual)

    @staticmethod
    def _cas_failure(key: str, expected_revision: int, responses: Any) -> StoreError:
        """NotFound or Conflict, from the ``get`` run in a failed transaction."""
        found = responses[0] if responses else []
        if not found:
            return NotFoundError(key)
        _, current = found[0]
        return ConflictError(key, expected_revision, int(current.mod_revision))

    async def _register_unless_lost(self, watch: _OpenWatch, key: bytes, callback: Any, **options: Any) -> Any:
        """`_register` on the watch's watcher, or None as soon as a failover
        shuts that watcher down. aetcd serializes registrations on a watcher
        and each waits up to the request timeout for etcd's answer, so on a
        shut-down watcher a dozen informers would otherwise wait a minute in
        line; the abandoned registration ends on its own (its result or error
        is dropped)."""
        registration = asyncio.ensure_future(self._register(watch.watcher, key, callback, **options))
        lost = asyncio.ensure_future(watch.lost.wait())
        try:
            await asyncio.wait({registration, lost}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            registration.cancel()
            registration.add_done_callback(_drop_result)
            raise
        finally:
            lost.cancel()
        if registration.done():
            # Cancelled without a cancel of ours: a failover closed its channel.
            return None if registration.cancelled() else registration.result()
        registration.add_done_callback(_drop_result)
        return None

    async def _register(self, watcher: Any, key: bytes, callback: Any, **options: Any) -> Any:
        """``watcher.add_callback``, in a task of its own.

        aetcd waits for etcd's answer with ``asyncio.wait_for``, which on
        Python 3.11 loses a cancel that lands as the answer arrives (it
        returns the result instead): the caller would then wait on its watch
        forever. Behind a shield the caller's cancel always reaches the
        caller; the registration is then waited for (bounded by the request
        timeout) and undone.
        """
        registration = asyncio.ensure_future(watcher.add_callback(key, callback, **options))
        try:
            return await asyncio.shield(registration)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                registered = await registration
                await self._cancel_watch(watcher, registered.watch_id)
            raise

    async def _cancel_watch(self, watcher: Any, watch_id: int) -> None:
        """Best effort: tell etcd to drop the watch (moot once closed or moved)."""
        if self._conn.closed or watcher is not self._conn.watcher:
            return
        try:
            await watcher.cancel(watch_id)
        except _BACKEND_ERRORS as exc:
            log.debug("etcd watch cancel failed", error=str(exc))
