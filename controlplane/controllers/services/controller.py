"""The service controller's shell (leader only): allocation repair, the upgrade, LoadBalancer status.

Keys: "namespace/name" of a Service, and `REPAIR` (""), synced every
`repair_period` seconds. A Service's sync gives it what it lacks (a clusterIP
for a Service stored before corral allocated them, nodePorts its type needs)
through the allocator and a compare-and-swap write, and keeps a LoadBalancer
Service's status.loadBalancer.ingress at the nodes' InternalIP addresses.
The repair sync reads every Service and allocation key from the store and
applies `reconcile.repair`: leaked keys freed, missing keys claimed again,
clashes logged (`service_allocation_clash`).
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from controlplane.apiserver.errors import ConflictError, InvalidError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.queue import WorkQueue
from controlplane.controllers.services.reconcile import Key, load_balancer_status, needs_allocation, repair
from controlplane.informer import CacheEvent, Change, Informer, object_key
from protos.corral.v1 import node_pb2, service_pb2
from protos.kinds import by_kind

log = structlog.get_logger(__name__)

REPAIR = ""
DEFAULT_REPAIR_PERIOD = 60.0
# A claim younger than this may still have its Service write on the way: repair leaves it.
DEFAULT_GRACE = 60.0
CONFLICT_RETRY = 0.2


def _addresses(node: object) -> list[tuple[str, str]]:
    if not isinstance(node, node_pb2.Node):
        return []
    return [(a.type, a.address) for a in node.status.addresses]


class ServiceController:
    name: str = "service"
    kinds: tuple[str, ...] = ("Service", "Node")
    workers: int = 1

    def __init__(
        self, api: ObjectApi, *, repair_period: float = DEFAULT_REPAIR_PERIOD, grace: float = DEFAULT_GRACE
    ) -> None:
        self.api = api
        self.repair_period = repair_period
        self.grace = grace
        self._services: Informer | None = None
        self._nodes: Informer | None = None

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._services = informers["Service"]
        self._nodes = informers["Node"]

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == "Service":
            return [] if event.change is Change.DELETED else [object_key(event.obj)]
        # A node came, went or changed its addresses: every LoadBalancer Service's status
        # (not on every heartbeat's status write).
        if event.change is Change.MODIFIED and _addresses(event.prev) == _addresses(event.obj):
            return []
        return self._load_balancers()

    def _load_balancers(self) -> list[str]:
        if self._services is None:
            return []
        return sorted(
            key
            for key, s in self._services.items.items()
            if isinstance(s, service_pb2.Service) and s.spec.type == "LoadBalancer"
        )

    def all_keys(self) -> Iterable[str]:
        keys = [REPAIR]
        if self._services is not None:
            keys += sorted(self._services.items)
        return keys

    def _node_addresses(self) -> list[str]:
        if self._nodes is None:
            return []
        return [
            a.address
            for node in self._nodes.items.values()
            if isinstance(node, node_pb2.Node)
            for a in node.status.addresses
            if a.type == "InternalIP" and a.address
        ]

    async def sync(self, key: str) -> float | None:
        if key == REPAIR:
            await self._repair()
            return self.repair_period
        namespace, _, name = key.partition("/")
        found = await self.api.find(by_kind("Service"), namespace, name)
        if not isinstance(found, service_pb2.Service):
            return None
        try:
            if needs_allocation(found):
                found = await self._allocate(found)
            await self._status(found)
        except ConflictError:
            return CONFLICT_RETRY
        except NotFoundError:
            return None
        return None

    async def _allocate(self, stored: service_pb2.Service) -> service_pb2.Service:
        wanted = service_pb2.Service()
        wanted.CopyFrom(stored)
        try:
            claimed, _ = await self.api.allocator.claim(stored, wanted)
        except InvalidError as e:
            log.warning(
                "service_allocation_failed",
                service=object_key(stored),
                reason="; ".join(str(c) for c in e.causes),
            )
            return stored
        try:
            written = await self.api.write(wanted)
        except BaseException:
            await self.api.allocator.release(claimed)
            raise
        assert isinstance(written, service_pb2.Service)
        log.info(
            "service_allocated",
            service=object_key(written),
            cluster_ip=written.spec.cluster_ip,
            node_ports=[p.node_port for p in written.spec.ports if p.node_port],
        )
        return written

    async def _status(self, service: service_pb2.Service) -> None:
        status = load_balancer_status(service, self._node_addresses())
        if status == service.status.load_balancer:
            return
        updated = service_pb2.Service()
        updated.CopyFrom(service)
        updated.status.load_balancer.CopyFrom(status)
        await self.api.update_status(updated)

    async def _repair(self) -> None:
        allocator = self.api.allocator
        listed = await allocator.listed()
        stored, _ = await self.api.watch_start("Service")
        services = [item.obj for item in stored if isinstance(item.obj, service_pb2.Service)]
        plan = repair(
            services,
            {key: Key(owner, revision) for key, (owner, revision) in listed.items()},
            ip_prefix=allocator.ip_prefix,
            port_prefix=allocator.port_prefix,
            now=allocator.now().timestamp(),
            grace=self.grace,
        )
        for key, revision in plan.free:
            if await allocator.free_key(key, revision):
                log.info("service_allocation_freed", key=key)
        for key, holder in plan.claim:
            if await allocator.claim_key(key, holder):
                log.info("service_allocation_restored", key=key, service=object_key(holder))
        for key, name, owner in plan.clashes:
            log.warning("service_allocation_clash", key=key, service=name, owned_by=owner)
