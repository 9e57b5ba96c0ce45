"""The route hub: every Service's current route, streamed to any number of nodes.

Fed by the shared Service and EndpointSlice informers: their listeners only
mark Service keys dirty; `run()` recomputes the dirty routes once per burst
(the changes of `coalesce` seconds are folded into one pass) with the pure
`routes.route_for`, and tells each subscriber which keys changed.

The node's ingress routing table (`IngressRoutes`, one message for all
Ingresses) rides on the same stream: `set_ingress` (from `IngressFeed`) marks
every subscriber, which then gets the whole table in its next message; a full
snapshot carries it once it is known (before that, the node keeps its own).
The pod network's table (every node's pod subnet, from `PodNetworkFeed`)
rides the same way (`set_pod_network`).

A subscriber holds a set of changed keys, not a queue of messages: however
slow it reads, it costs at most one key per Service, and when it reads it
gets the routes as they are then (whole routes for the changed Services, the
keys of the removed ones). A slow node never holds up the hub or other
nodes. A new subscriber first gets a full snapshot (`full=true`).

    hub = RouteHub(informers["Service"], informers["EndpointSlice"])
    task = asyncio.create_task(hub.run())
    async for message in hub.watch():   # ServiceRoutes: a snapshot, then deltas
        ...
    hub.refresh()                       # fold in what the caches have now
    hub.route("default", "web"), hub.routes(namespace=None)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import structlog

from controlplane.informer import CacheEvent, Change, Informer, object_key
from controlplane.registry.routes import route_for, service_key, slice_service_key
from protos.corral.v1 import discovery_pb2, ingress_pb2, node_service_pb2, service_pb2

log = structlog.get_logger(__name__)

COALESCE_SECONDS = 0.05


class Subscription:
    """One reader's pending changes; see `RouteHub.watch`."""

    def __init__(self, hub: RouteHub) -> None:
        self._hub = hub
        self._full = True
        self._pending: set[str] = set()
        self._ingress = False
        self._pod_network = False
        self._wake = asyncio.Event()

    def mark_ingress(self) -> None:
        self._ingress = True
        self._wake.set()

    def mark_pod_network(self) -> None:
        self._pod_network = True
        self._wake.set()

    def mark(self, keys: Iterable[str]) -> None:
        self._pending.update(keys)
        if self._pending:
            self._wake.set()

    @property
    def pending(self) -> int:
        """How many Services changed since this subscriber last read."""
        return len(self._pending)

    async def next(self) -> node_service_pb2.ServiceRoutes:
        """The snapshot first; then, once something changed, what changed."""
        await self._hub.ready.wait()
        while not self._full and not self._pending and not self._ingress and not self._pod_network:
            self._wake.clear()
            await self._wake.wait()
        ingress = self._hub.ingress if self._ingress or self._full else None
        pod_network = self._hub.pod_network if self._pod_network or self._full else None
        self._ingress = self._pod_network = False
        if self._full:
            self._full = False
            self._pending.clear()
            return node_service_pb2.ServiceRoutes(
                full=True, upserts=self._hub.current(), ingress=ingress, pod_network=pod_network
            )
        keys, self._pending = self._pending, set()
        message = node_service_pb2.ServiceRoutes(ingress=ingress, pod_network=pod_network)
        for key in sorted(keys):
            route = self._hub.current_route(key)
            if route is None:
                message.removed.append(key)
            else:
                message.upserts.append(route)
        return message


class RouteHub:
    def __init__(self, services: Informer, slices: Informer, *, coalesce: float = COALESCE_SECONDS) -> None:
        self._services = services
        self._slices = slices
        self.coalesce = coalesce
        self.ready = asyncio.Event()
        self._routes: dict[str, discovery_pb2.ServiceRoute] = {}
        # service key → slice key → slice, and each slice's service key
        self._by_service: dict[str, dict[str, discovery_pb2.EndpointSlice]] = {}
        self._slice_owner: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._subscribers: set[Subscription] = set()
        # The ingress routing table, once IngressFeed has computed it.
        self.ingress: ingress_pb2.IngressRoutes | None = None
        # Every node's pod subnet, once PodNetworkFeed has computed it.
        self.pod_network: node_service_pb2.PodNetwork | None = None
        for obj in slices.items.values():
            self._index_slice(obj)
        services.add_listener(self._on_service)
        slices.add_listener(self._on_slice)

    # -- reading ------------------------------------------------------------------

    def route(self, namespace: str, name: str) -> discovery_pb2.ServiceRoute | None:
        return self.route_by_key(service_key(namespace, name))

    def route_by_key(self, key: str) -> discovery_pb2.ServiceRoute | None:
        route = self._routes.get(key)
        return None if route is None else _copy(route)

    def routes(self, namespace: str | None = None) -> list[discovery_pb2.ServiceRoute]:
        """Every route (of one namespace, or all with None), by namespace and name."""
        return [
            _copy(self._routes[k])
            for k in sorted(self._routes)
            if namespace is None or self._routes[k].namespace == namespace
        ]

    def current(self) -> list[discovery_pb2.ServiceRoute]:
        """Every route, uncopied (for messages, which copy what they are given)."""
        return [self._routes[k] for k in sorted(self._routes)]

    def current_route(self, key: str) -> discovery_pb2.ServiceRoute | None:
        return self._routes.get(key)

    def set_ingress(self, routes: ingress_pb2.IngressRoutes) -> None:
        """The current ingress routing table; subscribers get it when it changed."""
        if routes == self.ingress:
            return
        self.ingress = routes
        for subscription in self._subscribers:
            subscription.mark_ingress()
        log.debug("ingress_routes_changed", hosts=len(routes.hosts), subscribers=len(self._subscribers))

    def set_pod_network(self, table: node_service_pb2.PodNetwork) -> None:
        """The nodes' pod subnets; subscribers get them when they changed."""
        if table == self.pod_network:
            return
        self.pod_network = table
        for subscription in self._subscribers:
            subscription.mark_pod_network()
        log.debug("pod_network_changed", nodes=len(table.nodes), subscribers=len(self._subscribers))

    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        """A new reader: its first `next()` is a full snapshot. Pair with `unsubscribe`."""
        subscription = Subscription(self)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    async def watch(self) -> AsyncIterator[node_service_pb2.ServiceRoutes]:
        """A full snapshot, then the changes, for as long as the caller reads."""
        subscription = self.subscribe()
        try:
            while True:
                yield await subscription.next()
        finally:
            self.unsubscribe(subscription)

    # -- keeping routes current ----------------------------------------------------

    async def run(self) -> None:
        await self._services.synced.wait()
        await self._slices.synced.wait()
        self._wake.clear()
        first = set(self._dirty) | set(self._services.items) | set(self._by_service)
        self._dirty.clear()
        self._recompute(first)
        self.ready.set()
        log.info("route_hub_ready", services=len(self._routes))
        while True:
            await self._wake.wait()
            await asyncio.sleep(self.coalesce)
            self.refresh()

    def refresh(self) -> None:
        """Recompute the routes that changed now, without waiting for the burst to end
        (for readers that want what the caches have, such as ListEndpoints)."""
        if not self.ready.is_set():
            return
        self._wake.clear()
        dirty, self._dirty = self._dirty, set()
        self._recompute(dirty)

    def _recompute(self, keys: Iterable[str]) -> None:
        changed: list[str] = []
        for key in keys:
            service = self._services.items.get(key)
            old = self._routes.get(key)
            if not isinstance(service, service_pb2.Service):
                if old is not None:
                    del self._routes[key]
                    changed.append(key)
                continue
            route = route_for(service, self._by_service.get(key, {}).values())
            if route != old:
                self._routes[key] = route
                changed.append(key)
        if not changed:
            return
        for subscription in self._subscribers:
            subscription.mark(changed)
        log.debug(
            "routes_changed", services=sorted(changed)[:20], changed=len(changed), subscribers=len(self._subscribers)
        )

    def _mark(self, key: str) -> None:
        self._dirty.add(key)
        self._wake.set()

    def _on_service(self, event: CacheEvent) -> None:
        self._mark(object_key(event.obj))

    def _on_slice(self, event: CacheEvent) -> None:
        before = self._slice_owner.get(object_key(event.obj))
        self._unindex_slice(event.obj)
        if event.change is not Change.DELETED:
            self._index_slice(event.obj)
        after = self._slice_owner.get(object_key(event.obj))
        for key in (before, after):
            if key is not None:
                self._mark(key)

    def _index_slice(self, obj: object) -> None:
        if not isinstance(obj, discovery_pb2.EndpointSlice):
            return
        owner = slice_service_key(obj)
        if owner is None:
            return
        key = object_key(obj)
        self._slice_owner[key] = owner
        self._by_service.setdefault(owner, {})[key] = obj

    def _unindex_slice(self, obj: object) -> None:
        if not isinstance(obj, discovery_pb2.EndpointSlice):
            return
        key = object_key(obj)
        owner = self._slice_owner.pop(key, None)
        if owner is None:
            return
        bucket = self._by_service.get(owner, {})
        bucket.pop(key, None)
        if not bucket:
            self._by_service.pop(owner, None)


def _copy(route: discovery_pb2.ServiceRoute) -> discovery_pb2.ServiceRoute:
    copy = discovery_pb2.ServiceRoute()
    copy.CopyFrom(route)
    return copy
