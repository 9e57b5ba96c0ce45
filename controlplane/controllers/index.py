"""A by-namespace index over an informer's cache (client-go's namespace indexer).

Kept current by the informer's events (listeners run synchronously on every
change, relists included), so `in_namespace` lists a namespace without scanning
every object of the kind. Typed: it holds only messages of one type.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from google.protobuf.message import Message

from controlplane.informer import CacheEvent, Change, Informer, object_key
from protos.kinds import meta

M = TypeVar("M", bound=Message)


class NamespaceIndex(Generic[M]):
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


class ControllerIndex(Generic[M]):
    """Objects by the uid of their controller owner, and orphans by namespace.

    A ReplicaSet sync reads only its own pods and the few orphans it might
    adopt, instead of every pod of the namespace, so the cost of a sync does
    not grow with the namespace.
    """

    def __init__(self, informer: Informer, message_type: type[M]) -> None:
        self._type = message_type
        self._owned: dict[str, dict[str, M]] = {}
        self._orphans: dict[str, dict[str, M]] = {}
        self._where: dict[str, tuple[bool, str]] = {}
        for obj in informer.items.values():
            self._put(obj)
        informer.add_listener(self._on_event)

    def owned_by(self, uid: str) -> list[M]:
        return list(self._owned.get(uid, {}).values())

    def orphans(self, namespace: str) -> list[M]:
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
            self._owned.setdefault(owner, {})[key] = obj
            self._where[key] = (True, owner)
        else:
            namespace = meta(obj).namespace
            self._orphans.setdefault(namespace, {})[key] = obj
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
