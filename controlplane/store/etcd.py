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
- create / update / delete: one transaction comparing ``create_revision``
  (existence) and ``mod_revision`` (CAS); on failure a ``get`` in the same
  transaction tells NotFound from Conflict. The returned revision is the one
  in the response header of the write.
- watch: one aetcd ``Watcher`` (one gRPC stream) per store, each watch a
  callback feeding a queue, with ``prev_kv``. A compacted start revision
  arrives as ``RevisionCompactedError`` right after the watch is created, so
  the first iteration raises `CompactedError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator, Sequence
from typing import Any

import aetcd  # type: ignore[import-untyped, unused-ignore]
import structlog

from controlplane.store.base import MAX_BATCH, EventType, KeyValue, ListPage, WatchEvent
from controlplane.store.errors import (
    AlreadyExistsError,
    CompactedError,
    ConflictError,
    NotFoundError,
    StoreError,
    UnavailableError,
)

__all__ = ["EtcdStore"]

log = structlog.get_logger(__name__)

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


def _translate(exc: BaseException, *, revision: int | None = None) -> StoreError:
    """The store error for an aetcd/gRPC exception (``revision``: the one asked for)."""
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
def _translated(*, revision: int | None = None) -> Iterator[None]:
    """Re-raise backend exceptions as store errors."""
    try:
        yield
    except StoreError:
        raise
    except _BACKEND_ERRORS as exc:
        raise _translate(exc, revision=revision) from exc


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


def _write_revision(response: Any) -> int:
    """The header revision of a put/delete response inside a transaction."""
    which = response.WhichOneof("response")
    return int(getattr(response, which).header.revision)


class EtcdStore:
    """A `Store` backed by etcd v3. Create it with `EtcdStore.connect`."""

    def __init__(self, client: Any, *, endpoint: str, timeout: float) -> None:
        self._client = client
        self._tx = client.transactions
        self._timeout = timeout
        self._closed = False
        self._watch_stream: Any = None
        self.endpoint = endpoint

    @classmethod
    async def connect(
        cls,
        endpoints: list[str],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the deadline of every RPC, not of this call
    ) -> EtcdStore:
        """Connect to the first of ``endpoints`` ("host:port") that answers.

        ``timeout`` (seconds) bounds each request to etcd, then and later.
        Raises `UnavailableError` when no endpoint answers.
        """
        if not endpoints:
            raise ValueError("no etcd endpoints given")
        failures: list[str] = []
        for endpoint in endpoints:
            store = cls._for_endpoint(endpoint, timeout)
            try:
                revision = await store.current_revision()
            except UnavailableError as exc:
                await store.close()
                failures.append(f"{endpoint}: {exc}")
                continue
            except BaseException:
                await store.close()
                raise
            log.info("connected to etcd", endpoint=endpoint, revision=revision)
            return store
        raise UnavailableError("no etcd endpoint answered: " + "; ".join(failures))

    @classmethod
    def _for_endpoint(cls, endpoint: str, timeout: float) -> EtcdStore:
        host, port = _split_endpoint(endpoint)
        client = aetcd.Client(host=host, port=port, timeout=timeout, options=_CHANNEL_OPTIONS)
        return cls(client, endpoint=endpoint, timeout=timeout)

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

    async def create(self, key: str, value: bytes) -> int:
        """Create the key if absent; `AlreadyExistsError` otherwise."""
        k = _encode(key)
        succeeded, responses = await self._txn(
            compare=[self._tx.create(k) == 0], success=[self._tx.put(k, value)], failure=[]
        )
        if not succeeded:
            raise AlreadyExistsError(key)
        return _write_revision(responses[0])

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        """Replace the value if the key is at ``expected_revision``."""
        k = _encode(key)
        succeeded, responses = await self._txn(
            compare=[self._tx.create(k) > 0, self._tx.mod(k) == expected_revision],
            success=[self._tx.put(k, value)],
            failure=[self._tx.get(k)],
        )
        if not succeeded:
            raise self._cas_failure(key, expected_revision, responses)
        return _write_revision(responses[0])

    async def update_many(self, items: Sequence[tuple[str, bytes, int]]) -> int:
        """All-or-nothing CAS of several keys in one etcd transaction."""
        if not 0 < len(items) <= MAX_BATCH:
            raise ValueError(f"update_many takes 1 to {MAX_BATCH} items, got {len(items)}")
        compare = []
        for key, _, expected in items:
            k = _encode(key)
            compare += [self._tx.create(k) > 0, self._tx.mod(k) == expected]
        succeeded, responses = await self._txn(
            compare=compare, success=[self._tx.put(_encode(key), value) for key, value, _ in items], failure=[])
        if not succeeded:
            raise ConflictError(items[0][0] if len(items) == 1 else f"{len(items)} keys", 0, 0)
        return _write_revision(responses[0])

    async def delete(self, key: str, *, expected_revision: int | None = None) -> int:
        """Delete the key (only at ``expected_revision`` when given)."""
        k = _encode(key)
        compare = [self._tx.create(k) > 0]
        if expected_revision is not None:
            compare.append(self._tx.mod(k) == expected_revision)
        succeeded, responses = await self._txn(compare=compare, success=[self._tx.delete(k)], failure=[self._tx.get(k)])
        if not succeeded:
            raise self._cas_failure(key, expected_revision or 0, responses)
        return _write_revision(responses[0])

    async def compact(self, revision: int) -> None:
        """Compact etcd's history below ``revision``.

        Logical compaction (not ``physical``): once this returns, reads and
        watches below ``revision`` fail; etcd frees the space in the background.
        """
        with _translated(revision=revision):
            await self._ready()
            await self._client.compact(revision, physical=False)

    # -- watch ------------------------------------------------------------

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncGenerator[WatchEvent, None]:
        """Every change under ``prefix`` from ``start_revision`` on, forever."""
        if start_revision < 1:
            raise ValueError(f"start_revision must be >= 1, got {start_revision}")
        key, end = _prefix_range(prefix)
        # The watcher calls back with an event, an exception (compaction,
        # lost stream) or None (watcher shut down by close()).
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        with _translated(revision=start_revision):
            watcher = await self._watcher()
            callback = await watcher.add_callback(
                key, inbox.put, range_end=end, start_revision=start_revision, prev_kv=True
            )
        try:
            while (item := await inbox.get()) is not None:
                if isinstance(item, BaseException):
                    raise _translate(item, revision=start_revision) from item
                yield _to_event(item)
        finally:
            await self._cancel_watch(watcher, callback.watch_id)

    async def close(self) -> None:
        """Close the connection; open watches end."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._watch_stream is not None:
                await self._watch_stream.shutdown()
            await self._client.close()
        except _BACKEND_ERRORS as exc:
            log.warning("error closing etcd client", endpoint=self.endpoint, error=str(exc))

    # -- internals --------------------------------------------------------

    async def _ready(self) -> None:
        if self._closed:
            raise StoreError("store is closed")
        await self._client.connect()

    async def _range(self, request: Any, *, revision: int | None = None) -> Any:
        """``KV.Range``; halves ``limit`` while the response is over gRPC's cap."""
        with _translated(revision=revision):
            await self._ready()
            while True:
                try:
                    return await self._client.kvstub.Range(
                        request, timeout=self._timeout, metadata=self._client.metadata
                    )
                except _rpc.AioRpcError as exc:
                    if exc.code() != _StatusCode.RESOURCE_EXHAUSTED or request.limit <= 1:
                        raise
                    request.limit //= 2
                    log.warning("etcd range over the message cap, halving", limit=request.limit)

    async def _txn(self, *, compare: Sequence[Any], success: Sequence[Any], failure: Sequence[Any]) -> Any:
        with _translated():
            await self._ready()
            return await self._client.transaction(compare=compare, success=success, failure=failure)

    @staticmethod
    def _cas_failure(key: str, expected_revision: int, responses: Any) -> StoreError:
        """NotFound or Conflict, from the ``get`` run in a failed transaction."""
        found = responses[0] if responses else []
        if not found:
            return NotFoundError(key)
        _, current = found[0]
        return ConflictError(key, expected_revision, int(current.mod_revision))

    async def _watcher(self) -> Any:
        """The aetcd watcher multiplexing this store's watches on one stream.

        Ours rather than the client's: its callbacks feed plain queues, so a
        closed watch leaves no async generator for the loop to finalize.
        """
        await self._ready()
        if self._watch_stream is None:
            self._watch_stream = aetcd.Watcher(
                _rpc.WatchStub(self._client.channel),
                timeout=self._timeout,
                metadata=self._client.metadata,
            )
        return self._watch_stream

    async def _cancel_watch(self, watcher: Any, watch_id: int) -> None:
        """Best effort: tell etcd to drop the watch (moot once closed)."""
        if self._closed:
            return
        try:
            await watcher.cancel(watch_id)
        except _BACKEND_ERRORS as exc:
            log.debug("etcd watch cancel failed", error=str(exc))
