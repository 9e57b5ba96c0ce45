"""EndpointSlice reconciliation, pure: a Service's pods versus its slices.

`reconcile(service, pods, nodes, deployments, slices, taken=…)` takes the
Service (None when it is gone), the pods and Deployments of its namespace,
the nodes by name, the slices this controller manages for it and the names
of every other slice of the namespace, and returns the slices to create,
update and delete:

- selected pods: the selector matches (a Service without selector has no
  managed slices), bound to a node with an IPv4 `hostIP` (a headless
  Service: `podIP`), not Succeeded or Failed; each becomes an endpoint (see
  `endpoint`), or none when it publishes none of the Service's ports (unless
  the Service is headless);
- ports: one per Service port (name, TCP, the container port its targetPort
  resolved to in the first pod, by name, that resolves it);
- traffic weights: while a BlueGreen or Canary Deployment of the namespace
  splits traffic (`status.traffic`) between pod-template-hashes that
  selected pods carry, every slice carries those weights (the union over such
  Deployments);
- packing: an endpoint stays in the slice it is in; new ones fill the
  existing slices with room (at most `max_endpoints` each), then new slices named
  `<service>-<n>` (the lowest free n; a name that ends in a number cannot be
  another Service's, and names `taken` by other slices are skipped);
  slices left empty are deleted. Endpoints are ordered by pod name, so equal
  inputs give equal slices, and a slice is written only when it changed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from controlplane.controllers.endpoints.endpoint import MemberOf, member, target
from protos.corral.v1 import discovery_pb2, meta_pb2, node_pb2, pod_pb2, service_pb2, workloads_pb2
from protos.wellknown import ENDPOINTSLICE_MANAGED_BY, POD_TEMPLATE_HASH, SERVICE_NAME

MANAGED_BY = "corral-endpoints"
MAX_ENDPOINTS = 100
ADDRESS_TYPE = "IPv4"


@dataclass(frozen=True)
class SliceActions:
    create: tuple[discovery_pb2.EndpointSlice, ...] = ()
    update: tuple[discovery_pb2.EndpointSlice, ...] = ()
    delete: tuple[discovery_pb2.EndpointSlice, ...] = ()
    # For the log: endpoints in the slices, and how many are ready.
    endpoints: int = 0
    ready: int = 0

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


def is_managed(endpoint_slice: discovery_pb2.EndpointSlice, service_name: str) -> bool:
    """Whether this controller manages the slice for the Service of that name."""
    labels = endpoint_slice.metadata.labels
    return labels.get(ENDPOINTSLICE_MANAGED_BY) == MANAGED_BY and labels.get(SERVICE_NAME) == service_name


def reconcile(
    service: service_pb2.Service | None,
    pods: Iterable[pod_pb2.Pod],
    nodes: Mapping[str, node_pb2.Node],
    deployments: Iterable[workloads_pb2.Deployment],
    slices: Iterable[discovery_pb2.EndpointSlice],
    *,
    taken: Collection[str] = (),
    max_endpoints: int = MAX_ENDPOINTS,
    member_of: MemberOf = member,
) -> SliceActions:
    """`member_of` is `member` or a cache of it (`Members`)."""
    slices = sorted(slices, key=lambda s: s.metadata.name)
    if service is None or not service.spec.selector:
        return SliceActions(delete=tuple(slices))
    taken_pods: list[tuple[pod_pb2.Pod, discovery_pb2.Endpoint | None]] = []
    for pod in pods:
        selected_pod, endpoint = member_of(service, pod, nodes)
        if selected_pod:
            taken_pods.append((pod, endpoint))
    taken_pods.sort(key=lambda t: t[0].metadata.name)
    selected = [p for p, _ in taken_pods]
    endpoints: dict[str, discovery_pb2.Endpoint] = {}
    for pod, endpoint in taken_pods:
        if endpoint is not None:
            endpoints[pod.metadata.name] = endpoint
    ports = slice_ports(service, selected)
    weights = traffic_weights(selected, deployments)
    packing = pack(endpoints, slices, max_endpoints)
    create, update, delete = [], [], []
    for existing, members in packing.kept:
        if not members:
            delete.append(existing)
            continue
        desired = build_slice(
            service, existing.metadata.name, existing, [endpoints[n] for n in members], ports, weights
        )
        if desired != existing:
            update.append(desired)
    in_use = {*taken, *(s.metadata.name for s in slices)}
    for name, members in zip(new_names(service.metadata.name, len(packing.new), in_use), packing.new, strict=True):
        create.append(build_slice(service, name, None, [endpoints[n] for n in members], ports, weights))
    ready = sum(1 for e in endpoints.values() if e.conditions.ready)
    return SliceActions(tuple(create), tuple(update), tuple(delete), endpoints=len(endpoints), ready=ready)


def slice_ports(service: service_pb2.Service, pods: Iterable[pod_pb2.Pod]) -> list[discovery_pb2.EndpointPort]:
    pods = list(pods)
    ports = []
    for port in service.spec.ports:
        out = discovery_pb2.EndpointPort(name=port.name, protocol=port.protocol or "TCP")
        resolved = next((t for t in (target(p, port) for p in pods) if t is not None), None)
        if resolved is not None:
            out.port = resolved.container_port
        elif port.target_port.HasField("int_val") and port.target_port.int_val:
            out.port = port.target_port.int_val
        ports.append(out)
    return ports


def traffic_weights(pods: Iterable[pod_pb2.Pod], deployments: Iterable[workloads_pb2.Deployment]) -> dict[str, int]:
    """The weights of the Deployments splitting traffic between the groups of these pods."""
    groups = {p.metadata.labels.get(POD_TEMPLATE_HASH, "") for p in pods} - {""}
    weights: dict[str, int] = {}
    for deployment in sorted(deployments, key=lambda d: d.metadata.name):
        split = {t.pod_template_hash: t.weight for t in deployment.status.traffic}
        if groups & split.keys():
            weights.update(split)
    return weights


@dataclass
class Packing:
    # Each existing slice with the pod names it keeps (none: delete it).
    kept: list[tuple[discovery_pb2.EndpointSlice, list[str]]] = field(default_factory=list)
    # Pod names for each new slice.
    new: list[list[str]] = field(default_factory=list)


def pack(
    endpoints: Mapping[str, discovery_pb2.Endpoint], slices: Iterable[discovery_pb2.EndpointSlice], max_endpoints: int
) -> Packing:
    """Keep endpoints where they are; put new ones where there is room."""
    placed: set[str] = set()
    packing = Packing()
    for existing in slices:
        members: list[str] = []
        for endpoint in existing.endpoints:
            name = endpoint.target_ref.name
            if name in endpoints and name not in placed and len(members) < max_endpoints:
                members.append(name)
                placed.add(name)
        packing.kept.append((existing, members))
    waiting = [n for n in sorted(endpoints) if n not in placed]
    for _, members in packing.kept:
        room = max_endpoints - len(members)
        members.extend(waiting[:room])
        waiting = waiting[room:]
    while waiting:
        packing.new.append(waiting[:max_endpoints])
        waiting = waiting[max_endpoints:]
    for _, members in packing.kept:
        members.sort()
    return packing


def new_names(service: str, count: int, taken: Collection[str]) -> list[str]:
    names: list[str] = []
    n = 0
    while len(names) < count:
        name = f"{service}-{n}"
        if name not in taken:
            names.append(name)
        n += 1
    return names


def build_slice(
    service: service_pb2.Service,
    name: str,
    existing: discovery_pb2.EndpointSlice | None,
    endpoints: Iterable[discovery_pb2.Endpoint],
    ports: Iterable[discovery_pb2.EndpointPort],
    weights: Mapping[str, int],
) -> discovery_pb2.EndpointSlice:
    """The slice as it should be (on a copy of `existing`, so its metadata is kept)."""
    s = discovery_pb2.EndpointSlice()
    if existing is not None:
        s.CopyFrom(existing)
    s.api_version, s.kind = "discovery.k8s.io/v1", "EndpointSlice"
    m = s.metadata
    m.name, m.namespace = name, service.metadata.namespace
    m.labels.clear()
    m.labels.update({SERVICE_NAME: service.metadata.name, ENDPOINTSLICE_MANAGED_BY: MANAGED_BY})
    del m.owner_references[:]
    m.owner_references.append(
        meta_pb2.OwnerReference(
            api_version="v1",
            kind="Service",
            name=service.metadata.name,
            uid=service.metadata.uid,
            controller=True,
            block_owner_deletion=True,
        )
    )
    s.address_type = ADDRESS_TYPE
    s.ClearField("endpoints")
    s.endpoints.extend(sorted(endpoints, key=lambda e: e.target_ref.name))
    s.ClearField("ports")
    s.ports.extend(ports)
    s.traffic_weights.clear()
    s.traffic_weights.update(weights)
    return s
