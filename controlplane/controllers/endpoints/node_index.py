"""Which Services have endpoints on a node, from the EndpointSlice cache.

A node whose readiness flips changes the endpoints of exactly these
Services; the index finds them without scanning every slice. Kept current by
the informer's events, relists included.
"""

from __future__ import annotations

from controlplane.informer import CacheEvent, Change, Informer, object_key
from controlplane.registry.routes import slice_service_key
from protos.corral.v1 import discovery_pb2


class NodeIndex:
    def __init__(self, informer: Informer) -> None:
        # node → slice key → service key; and the nodes of each slice
        self._by_node: dict[str, dict[str, str]] = {}
        self._nodes_of: dict[str, frozenset[str]] = {}
        for obj in informer.items.values():
            self._put(obj)
        informer.add_listener(self._on_event)

    def services_on(self, node: str) -> list[str]:
        return sorted(set(self._by_node.get(node, {}).values()))

    def _on_event(self, event: CacheEvent) -> None:
        self._remove(object_key(event.obj))
        if event.change is not Change.DELETED:
            self._put(event.obj)

    def _put(self, obj: object) -> None:
        if not isinstance(obj, discovery_pb2.EndpointSlice):
            return
        service = slice_service_key(obj)
        if service is None:
            return
        key = object_key(obj)
        nodes = frozenset(e.node_name for e in obj.endpoints if e.node_name)
        self._nodes_of[key] = nodes
        for node in nodes:
            self._by_node.setdefault(node, {})[key] = service

    def _remove(self, key: str) -> None:
        for node in self._nodes_of.pop(key, frozenset()):
            bucket = self._by_node.get(node)
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    del self._by_node[node]
