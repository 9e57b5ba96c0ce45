"""A by-namespace index over an informer's cache (client-go's namespace indexer).

Kept current by the informer's events (listeners run synchronously on every
change, relists included), so `in_namespace` lists a namespace without scanning
every object of the kind. Typed: it holds only messages of one type.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from google.protobuf.message import Message

from controlplane.informer import CacheEvent, Informer, object_key
from controlplane.store.objects import Change
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
