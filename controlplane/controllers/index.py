"""Indexes over an informer's cache, kept current by its events (listeners run
synchronously on every change, relists included). `NamespaceIndex` lives
beside the informer (the API server's admission caches use it too).

`ControllerIndex.shared` and `PodFactsIndex.shared` give every controller of a
term one index per informer (and message type), so a pod event updates one
index, not one per controller. The manager takes the index's listener off a
shared informer when its term ends; the next term's controllers then get a new
index (one no longer listening is never handed out).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar
from weakref import WeakKeyDictionary

from google.protobuf.message import Message

from controlplane.informer import CacheEvent, Change, Informer, NamespaceIndex, object_key
from protos import pods as podutil
from protos.corral.v1 import pod_pb2
from protos.kinds import meta

__all__ = ["ControllerIndex", "NamespaceIndex", "PodFactsIndex", "discard_from"]

M = TypeVar("M", bound=Message)
V = TypeVar("V")
K = TypeVar("K", bound=Hashable)
H = TypeVar("H", bound=Hashable)


def discard_from(table: dict[K, set[H]], bucket: K, value: H) -> None:
    """Take ``value`` out of ``table[bucket]``, and the bucket out of the table once empty: an
    index keyed by node or owner uid must not keep a set for every node or owner it ever saw
    (nor a set's table at its largest size: Python never shrinks one)."""
    values = table.get(bucket)
    if values is not None:
        values.discard(value)
        if not values:
            del table[bucket]


class _OwnerIndex(Generic[M, V]):
    """Values of objects (`view(obj)`) by the uid of their controller owner, and orphans by namespace."""

    def __init__(self, informer: Informer, message_type: type[M], view: Callable[[M], V]) -> None:
        self._type = message_type
        self._view = view
        self._owned: dict[str, dict[str, V]] = {}
        self._orphans: dict[str, dict[str, V]] = {}
        self._where: dict[str, tuple[bool, str]] = {}
        for obj in informer.items.values():
            self._put(obj)
        informer.add_listener(self._on_event)

    def listening_to(self, informer: Informer) -> bool:
        return self._on_event in informer.listeners

    def owned_by(self, uid: str) -> list[V]:
        return list(self._owned.get(uid, {}).values())

    def orphans(self, namespace: str) -> list[V]:
        return list(self._orphans.get(namespace, {}).values())

    def _on_event(self, event: CacheEvent) -> None:
        self._remove(event.obj)
        if event.change is not Change.DELETED:
            self._put(event.obj)

    def _put(self, obj: Message) -> None:
        if not isinstance(obj, self._type):
            return
        key = object_key(obj)
        owner = next((r.uid for r in meta(obj).owner_references if r.controller), "")
        if owner:
            self._owned.setdefault(owner, {})[key] = self._view(obj)
            self._where[key] = (True, owner)
        else:
            namespace = meta(obj).namespace
            self._orphans.setdefault(namespace, {})[key] = self._view(obj)
            self._where[key] = (False, namespace)

    def _remove(self, obj: Message) -> None:
        key = object_key(obj)
        where = self._where.pop(key, None)
        if where is None:
            return
        table = self._owned if where[0] else self._orphans
        bucket = table.get(where[1])
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del table[where[1]]


def _same(obj: M) -> M:
    return obj


# Per informer: the indexes handed out by `shared`, by (index class, message type).
_SHARED: WeakKeyDictionary[Informer, dict[tuple[type, type], Any]] = WeakKeyDictionary()


def _shared(informer: Informer, key: tuple[type, type], make: Callable[[], Any]) -> Any:
    indexes = _SHARED.setdefault(informer, {})
    found = indexes.get(key)
    if found is None or not found.listening_to(informer):
        found = indexes[key] = make()
    return found


class ControllerIndex(_OwnerIndex[M, M]):
    """Objects by the uid of their controller owner, and orphans by namespace.

    A ReplicaSet sync reads only its own pods and the few orphans it might
    adopt, instead of every pod of the namespace, so the cost of a sync does
    not grow with the namespace.
    """

    def __init__(self, informer: Informer, message_type: type[M]) -> None:
        super().__init__(informer, message_type, _same)

    @classmethod
    def shared(cls, informer: Informer, message_type: type[M]) -> ControllerIndex[M]:
        """The index of `message_type` over `informer` that the controllers share."""
        found: ControllerIndex[M] = _shared(informer, (cls, message_type), lambda: cls(informer, message_type))
        return found


class PodFactsIndex(_OwnerIndex[pod_pb2.Pod, podutil.PodFacts]):
    """Pods' `PodFacts` by controller owner uid, and orphans' by namespace: each pod
    version is read once, when the informer tells of it, not at every sync of its owner."""

    def __init__(self, informer: Informer) -> None:
        super().__init__(informer, pod_pb2.Pod, podutil.facts_of)

    @classmethod
    def shared(cls, informer: Informer) -> PodFactsIndex:
        """The index over `informer` that the controllers share."""
        found: PodFactsIndex = _shared(informer, (cls, pod_pb2.Pod), lambda: cls(informer))
        return found
