"""Indexes over an informer's cache, kept current by its events (listeners run
synchronously on every change, relists included). `NamespaceIndex` lives
beside the informer (the API server's admission caches use it too).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from google.protobuf.message import Message

from controlplane.informer import CacheEvent, Change, Informer, NamespaceIndex, object_key
from protos.kinds import meta

__all__ = ["ControllerIndex", "NamespaceIndex", "discard_from"]

M = TypeVar("M", bound=Message)
K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Hashable)


def discard_from(table: dict[K, set[V]], bucket: K, value: V) -> None:
    """Take ``value`` out of ``table[bucket]``, and the bucket out of the table once empty: an
    index keyed by node or owner uid must not keep a set for every node or owner it ever saw
    (nor a set's table at its largest size: Python never shrinks one)."""
    values = table.get(bucket)
    if values is not None:
        values.discard(value)
        if not values:
            del table[bucket]


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
