"""The ingress controller's shell: caches in, status written with a compare-and-swap, events.

Keys are Ingress keys ("ns/name"). An Ingress is synced when it changes and
when anything its routing or status reads changes (every Ingress then: the
routing is one table across Ingresses). Ingresses corral does not serve are
left alone. Each warning is recorded once while it holds (again after it went
away and came back).
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from controlplane.apiserver.errors import ConflictError, NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.events import EventRecorder
from controlplane.controllers.ingress.reconcile import ingress_status, warnings
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import CacheEvent, Informer, object_key
from controlplane.registry.ingress import ingress_plan
from protos.corral.v1 import ingress_pb2, node_pb2, secret_pb2, service_pb2

log = structlog.get_logger(__name__)

INGRESS = "Ingress"
CONFLICT_RETRY = 0.1


class IngressController:
    name: str = "ingress"
    kinds: tuple[str, ...] = (INGRESS, "IngressClass", "Service", "Secret", "Node")
    workers: int = 1

    def __init__(self, api: ObjectApi, events: EventRecorder) -> None:
        self.api = api
        self.events = events
        self._informers: dict[str, Informer] = {}
        self._warned: dict[str, set[tuple[str, str]]] = {}

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._informers = {kind: informers[kind] for kind in self.kinds}

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == INGRESS:
            return [object_key(event.obj)]
        heartbeat = (
            kind == "Node"
            and isinstance(event.prev, node_pb2.Node)
            and isinstance(event.obj, node_pb2.Node)
            and ingress_status([event.prev]) == ingress_status([event.obj])
        )
        return [] if heartbeat else self.all_keys()

    def all_keys(self) -> Iterable[str]:
        return list(self._informers[INGRESS].items) if self._informers else []

    async def sync(self, key: str) -> float | None:
        ingress = self._informers[INGRESS].items.get(key)
        if not isinstance(ingress, ingress_pb2.Ingress):
            self._warned.pop(key, None)
            return None
        plan = ingress_plan(
            [o for o in self._informers[INGRESS].items.values() if isinstance(o, ingress_pb2.Ingress)],
            [o for o in self._informers["IngressClass"].items.values() if isinstance(o, ingress_pb2.IngressClass)],
            {k: o for k, o in self._informers["Service"].items.items() if isinstance(o, service_pb2.Service)},
            {k: o for k, o in self._informers["Secret"].items.items() if isinstance(o, secret_pb2.Secret)},
        )
        if key not in plan.served:
            self._warned.pop(key, None)
            return None
        current = set(warnings(plan, key))
        for reason, message in sorted(current - self._warned.get(key, set())):
            await self.events.record(ingress, "Warning", reason, message)
        self._warned[key] = current
        nodes = [o for o in self._informers["Node"].items.values() if isinstance(o, node_pb2.Node)]
        status = ingress_status(nodes)
        if status == ingress.status:
            return None
        updated = ingress_pb2.Ingress()
        updated.CopyFrom(ingress)
        updated.status.CopyFrom(status)
        try:
            await self.api.update_status(updated)
        except ConflictError:
            return CONFLICT_RETRY
        except NotFoundError:
            return None
        log.info("ingress_status_synced", ingress=key, addresses=[i.ip for i in status.load_balancer.ingress])
        return None
