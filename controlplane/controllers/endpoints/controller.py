"""The endpoints controller's shell: watch caches in, `reconcile`, slices out.

Keys are Service keys ("ns/name"). What queues a Service:

- the Service itself, and its managed EndpointSlices (so a slice someone else
  changed or deleted is put right, and our own writes are checked once more);
- a pod of its namespace whose old or new labels its selector matches, when
  something an endpoint is made of changed (labels, binding, hostIP, podIP, phase,
  readiness, deletion, ports) — not every status write;
- a node whose readiness flipped (not its heartbeats), for the Services with
  endpoints on it;
- a Deployment of its namespace whose `status.traffic` changed.

A sync reads everything from the informers, reconciles, and writes: creates
through `ObjectApi.create`, updates and deletes as compare-and-swap on the
cached resourceVersion; deletes only after every create and update
succeeded, so an endpoint being moved is never missing. A conflict (a stale
cache) raises, and the work queue retries on fresh state. When the Service is
gone, its managed slices are deleted (the garbage collector does not know
Services).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass

import structlog
from google.protobuf.message import Message

from controlplane.apiserver.errors import NotFoundError
from controlplane.apiserver.handlers import ObjectApi
from controlplane.controllers.endpoints.endpoint import Members
from controlplane.controllers.endpoints.node_index import NodeIndex
from controlplane.controllers.endpoints.reconcile import MAX_ENDPOINTS, SliceActions, is_managed, reconcile
from controlplane.controllers.index import NamespaceIndex
from controlplane.controllers.queue import WorkQueue
from controlplane.informer import CacheEvent, Change, Informer, object_key
from controlplane.registry.routes import service_key
from protos import nodes as nodeutil
from protos import pods as podutil
from protos.corral.v1 import discovery_pb2, node_pb2, pod_pb2, service_pb2, workloads_pb2
from protos.kinds import meta
from protos.wellknown import SERVICE_NAME

log = structlog.get_logger(__name__)


def pod_view(pod: Message) -> tuple[object, ...]:
    """What a pod's endpoint is made of; a status write that leaves it equal changes nothing."""
    assert isinstance(pod, pod_pb2.Pod)
    spec_ports = tuple(
        (c.name, tuple((p.name, p.container_port, p.host_port, p.protocol) for p in c.ports))
        for c in podutil.long_running(pod.spec)
    )
    published = tuple(
        (s.name, s.ip, tuple((p.container_port, p.host_port, p.protocol) for p in s.ports))
        for s in podutil.long_running_statuses(pod)
    )
    return (
        tuple(sorted(pod.metadata.labels.items())),
        pod.metadata.uid,
        podutil.is_terminating(pod),
        pod.spec.node_name,
        pod.status.host_ip,
        pod.status.pod_ip,
        pod.spec.hostname,
        pod.spec.subdomain,
        pod.status.phase,
        podutil.is_ready(pod),
        spec_ports,
        published,
    )


def traffic(obj: Message | None) -> tuple[tuple[str, int], ...]:
    if not isinstance(obj, workloads_pb2.Deployment):
        return ()
    return tuple((t.pod_template_hash, t.weight) for t in obj.status.traffic)


@dataclass(frozen=True)
class Caches:
    services: Informer
    nodes: Informer
    slices: Informer
    services_by_ns: NamespaceIndex[service_pb2.Service]
    pods_by_ns: NamespaceIndex[pod_pb2.Pod]
    deployments_by_ns: NamespaceIndex[workloads_pb2.Deployment]
    slices_by_ns: NamespaceIndex[discovery_pb2.EndpointSlice]
    services_by_node: NodeIndex


class EndpointsController:
    name: str = "endpoints"
    kinds: tuple[str, ...] = ("Service", "Pod", "Node", "Deployment", "EndpointSlice")

    def __init__(self, api: ObjectApi, *, workers: int = 2, max_endpoints: int = MAX_ENDPOINTS) -> None:
        self.api = api
        self.workers = workers
        self.max_endpoints = max_endpoints
        self._caches: Caches | None = None
        self._members = Members()

    # -- wiring -----------------------------------------------------------------

    def bind(self, informers: dict[str, Informer], queue: WorkQueue) -> None:
        del queue
        self._caches = Caches(
            services=informers["Service"],
            nodes=informers["Node"],
            slices=informers["EndpointSlice"],
            services_by_ns=NamespaceIndex(informers["Service"], service_pb2.Service),
            pods_by_ns=NamespaceIndex(informers["Pod"], pod_pb2.Pod),
            deployments_by_ns=NamespaceIndex(informers["Deployment"], workloads_pb2.Deployment),
            slices_by_ns=NamespaceIndex(informers["EndpointSlice"], discovery_pb2.EndpointSlice),
            services_by_node=NodeIndex(informers["EndpointSlice"]),
        )

    def caches(self) -> Caches:
        if self._caches is None:
            raise RuntimeError("EndpointsController used before bind()")
        return self._caches

    def keys_for(self, kind: str, event: CacheEvent) -> Iterable[str]:
        if kind == "Service":
            return [object_key(event.obj)]
        if kind == "Pod":
            # The Services first: in a namespace without one, no pod change costs a view.
            selecting = self._selecting(event.obj, event.prev)
            if (
                selecting
                and event.change is Change.MODIFIED
                and event.prev is not None
                and pod_view(event.prev) == pod_view(event.obj)
            ):
                return []
            return selecting
        if kind == "Node":
            if (
                event.change is Change.MODIFIED
                and isinstance(event.prev, node_pb2.Node)
                and isinstance(event.obj, node_pb2.Node)
                and nodeutil.is_ready(event.prev) == nodeutil.is_ready(event.obj)
                and event.prev.spec.pod_cidr == event.obj.spec.pod_cidr
            ):
                return []  # a heartbeat
            return self.caches().services_by_node.services_on(object_key(event.obj))
        if kind == "Deployment":
            after = () if event.change is Change.DELETED else traffic(event.obj)
            before = traffic(event.obj) if event.change is Change.DELETED else traffic(event.prev)
            if before == after:
                return []
            namespace = meta(event.obj).namespace
            return sorted(object_key(s) for s in self.caches().services_by_ns.in_namespace(namespace))
        return self._slice_owners(event)

    def all_keys(self) -> Iterable[str]:
        caches = self.caches()
        keys = set(caches.services.items)
        for obj in caches.slices.items.values():
            owner = self._managed_owner(obj)
            if owner is not None:
                keys.add(owner)
        return sorted(keys)

    def _selecting(self, pod: Message, prev: Message | None) -> list[str]:
        labelings = [meta(obj).labels for obj in (pod, prev) if obj is not None]
        keys = set()
        for service in self.caches().services_by_ns.in_namespace(meta(pod).namespace):
            selector = service.spec.selector
            if selector and any(all(labels.get(k) == v for k, v in selector.items()) for labels in labelings):
                keys.add(object_key(service))
        return sorted(keys)

    @staticmethod
    def _managed_owner(obj: Message | None) -> str | None:
        if not isinstance(obj, discovery_pb2.EndpointSlice):
            return None
        name = obj.metadata.labels.get(SERVICE_NAME, "")
        if not name or not is_managed(obj, name):
            return None
        return service_key(obj.metadata.namespace, name)

    def _slice_owners(self, event: CacheEvent) -> list[str]:
        owners = {self._managed_owner(event.obj), self._managed_owner(event.prev)}
        return sorted(k for k in owners if k is not None)

    # -- sync -------------------------------------------------------------------

    async def sync(self, key: str) -> float | None:
        caches = self.caches()
        namespace, _, name = key.partition("/")
        cached = caches.services.items.get(key)
        service = cached if isinstance(cached, service_pb2.Service) else None
        in_namespace = caches.slices_by_ns.in_namespace(namespace)
        mine = [s for s in in_namespace if is_managed(s, name)]
        taken = {s.metadata.name for s in in_namespace if not is_managed(s, name)}
        nodes = {k: n for k, n in caches.nodes.items.items() if isinstance(n, node_pb2.Node)}
        # No await from begin to synced: the two workers' syncs do not interleave here.
        self._members.begin(key)
        actions = reconcile(
            service,
            caches.pods_by_ns.in_namespace(namespace),
            nodes,
            caches.deployments_by_ns.in_namespace(namespace),
            mine,
            taken=taken,
            max_endpoints=self.max_endpoints,
            member_of=self._members,
        )
        if service is None:
            self._members.forget(key)
        else:
            self._members.synced()
        if not actions.empty:
            await self._apply(key, actions)
        return None

    async def _apply(self, key: str, actions: SliceActions) -> None:
        writes: list[Awaitable[Message]] = [self.api.create(s) for s in actions.create]
        writes += [self.api.write(s) for s in actions.update]
        errors = _failures(await asyncio.gather(*writes, return_exceptions=True))
        deleted: list[str] = []
        if not errors:
            results = await asyncio.gather(*(self._delete(s) for s in actions.delete), return_exceptions=True)
            errors = _failures(results)
            deleted = [
                s.metadata.name
                for s, r in zip(actions.delete, results, strict=True)
                if not isinstance(r, BaseException)
            ]
        log.info(
            "endpoints_updated",
            service=key,
            endpoints=actions.endpoints,
            ready=actions.ready,
            created=[s.metadata.name for s in actions.create],
            updated=[s.metadata.name for s in actions.update],
            deleted=deleted,
            failed=len(errors),
        )
        if errors:
            raise errors[0]

    async def _delete(self, endpoint_slice: discovery_pb2.EndpointSlice) -> None:
        try:
            await self.api.remove(endpoint_slice)
        except NotFoundError:
            return


def _failures(results: Iterable[object]) -> list[BaseException]:
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors:
        if isinstance(error, asyncio.CancelledError):
            raise error
    return errors
