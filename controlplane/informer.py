"""A watch-fed, in-memory cache of one kind (Kubernetes' informer).

`run()` lists everything at one revision, then watches from the revision after
it. A compacted watch, a watch ended because the cache fell too far behind
(`WatchOverflowError`) or any storage error re-lists (after a short backoff)
and replays the difference as changes, so listeners never miss a change and
never see an older resourceVersion after a newer one.

`refresh()` catches a running cache up with the store at once (a list, its
difference replayed): a watch can lag a busy store by a fraction of a second,
and a new leader sharing the serving replica's informers must not act on a
cache older than the writes of the term before it.

Informers are the controllers' read side: they read an `ObjectSource` (the
`ObjectStore` satisfies it), so controllers write only through `ObjectApi`
and import nothing of the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import structlog
from google.protobuf.message import Message

from controlplane.store import errors as store_errors
from controlplane.store.objects import Change, ObjectEvent
from protos.kinds import KindInfo, meta

__all__ = ["CacheEvent", "Change", "Informer", "Listener", "NamespaceIndex", "ObjectSource", "object_key"]

log = structlog.get_logger(__name__)


class ObjectSource(Protocol):
    """What an informer reads: a kind's objects at one revision, and its changes after it."""

    async def list_all(self, info: KindInfo, namespace: str = "") -> tuple[list[Message], int]: ...

    def watch(self, info: KindInfo, namespace: str = "", *, start_revision: int) -> AsyncIterator[ObjectEvent]: ...


Listener = Callable[["CacheEvent"], None]


@dataclass(frozen=True)
class CacheEvent:
    change: Change
    obj: Message
    prev: Message | None
    revision: int


def object_key(obj: Message) -> str:
    m = meta(obj)
    return f"{m.namespace}/{m.name}" if m.namespace else m.name


class Informer:
    def __init__(self, objects: ObjectSource, info: KindInfo, *, relist_backoff: float = 0.5) -> None:
        self.objects = objects
        self.info = info
        self.items: dict[str, Message] = {}
        self.revision = 0
        self.synced = asyncio.Event()
        self._listeners: list[Listener] = []
        self._relist_backoff = relist_backoff

    def add_listener(self, listener: Listener) -> None:
        """Tell ``listener`` of every change from now on; a cache that already holds objects
        first replays them to it as ADDED (as client-go does for a late event handler), so
        an index built from events starts complete."""
        self._listeners.append(listener)
        for obj in list(self.items.values()):
            listener(CacheEvent(Change.ADDED, obj, None, self.revision))

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return tuple(self._listeners)

    def remove_listener(self, listener: Listener) -> None:
        """Stop telling ``listener`` (a no-op when it is not listening)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, event: CacheEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # one listener's bug must not stop the cache others read (and serve)
                log.exception(
                    "informer_listener_failed",
                    kind=self.info.kind,
                    listener=getattr(listener, "__qualname__", repr(listener)),
                )

    async def run(self) -> None:
        delay = self._relist_backoff
        while True:
            try:
                await self._relist()
                delay = self._relist_backoff
                await self._follow()
            except store_errors.CompactedError:
                log.info("informer_relist", kind=self.info.kind, reason="compacted", revision=self.revision)
            except store_errors.WatchOverflowError as e:
                log.warning(
                    "informer_relist",
                    kind=self.info.kind,
                    reason="fell behind",
                    revision=self.revision,
                    events=e.events,
                )
            except store_errors.StoreError as e:
                log.warning("informer_store_error", kind=self.info.kind, error=str(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def refresh(self) -> None:
        """Once synced, make the cache at least as new as the store is now: list, and replay
        the difference as changes; the watch then skips what the list already brought."""
        await self.synced.wait()
        delay = self._relist_backoff
        while True:
            try:
                listed, revision = await self.objects.list_all(self.info)
                break
            except store_errors.StoreError as e:  # etcd busy or moving: a new term waits, it does not fail
                log.warning("informer_refresh_failed", kind=self.info.kind, error=str(e), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if revision <= self.revision:
            return  # the watch got there while the list was read
        self._replace(listed, revision)

    async def _relist(self) -> None:
        listed, revision = await self.objects.list_all(self.info)
        if revision < self.revision:
            # A lagging etcd member (after a failover) answered: never go back in time.
            raise store_errors.UnavailableError(
                f"{self.info.kind} list at revision {revision} is older than the cache's {self.revision}"
            )
        self._replace(listed, revision)

    def _replace(self, listed: list[Message], revision: int) -> None:
        """Make the cache ``listed`` (read at ``revision``), telling listeners of each difference."""
        fresh = {object_key(o): o for o in listed}
        for key, old in list(self.items.items()):
            if key not in fresh:
                del self.items[key]
                self._emit(CacheEvent(Change.DELETED, old, old, revision))
        for key, obj in fresh.items():
            known = self.items.get(key)
            if known is None or meta(known).resource_version != meta(obj).resource_version:
                self.items[key] = obj
                change = Change.ADDED if known is None else Change.MODIFIED
                self._emit(CacheEvent(change, obj, known, revision))
        self.revision = revision
        self.synced.set()

    def _seen(self, change: Change, cached: Message | None, revision: int) -> bool:
        """Whether an event is already reflected in the cache. One etcd transaction changes
        several keys at one revision, so this is judged per object, not by the stream's revision."""
        if revision < self.revision:
            return True
        if change is Change.DELETED:
            return cached is None
        return cached is not None and int(meta(cached).resource_version or 0) >= revision

    async def _follow(self) -> None:
        async for ev in self.objects.watch(self.info, start_revision=self.revision + 1):
            key = object_key(ev.obj)
            old = self.items.get(key)
            if self._seen(ev.change, old, ev.revision):
                continue  # a re-delivered event: never applied twice, never older after newer
            if ev.change is Change.DELETED:
                self.items.pop(key, None)
            else:
                self.items[key] = ev.obj
            self.revision = ev.revision
            self._emit(CacheEvent(ev.change, ev.obj, old, ev.revision))


M = TypeVar("M", bound=Message)


class NamespaceIndex(Generic[M]):
    """A by-namespace index over an informer's cache (client-go's namespace indexer).

    Kept current by the informer's events, so `in_namespace` lists a namespace
    without scanning every object of the kind. Typed: it holds only messages of one type.
    """

    def __init__(self, informer: Informer, message_type: type[M]) -> None:
        self._type = message_type
        self._by_namespace: dict[str, dict[str, M]] = {}
        for obj in informer.items.values():
            self._put(obj)
        informer.add_listener(self._on_event)

    def in_namespace(self, namespace: str) -> list[M]:
        return list(self._by_namespace.get(namespace, {}).values())

    def _on_event(self, event: CacheEvent) -> None:
        if event.change is Change.DELETED:
            self._remove(event.obj)
        else:
            self._put(event.obj)

    def _put(self, obj: Message) -> None:
        if isinstance(obj, self._type):
            self._by_namespace.setdefault(meta(obj).namespace, {})[object_key(obj)] = obj

    def _remove(self, obj: Message) -> None:
        namespace = meta(obj).namespace
        bucket = self._by_namespace.get(namespace)
        if bucket is not None:
            bucket.pop(object_key(obj), None)
            if not bucket:
                del self._by_namespace[namespace]
