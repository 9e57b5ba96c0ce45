"""Service routes, pure: what every node's proxy needs to serve one Service.

`route_for(service, slices)` joins a Service with the EndpointSlices labelled
`kubernetes.io/service-name=<service>` (the endpoints controller's, or a
user's for a Service without selector):

- one `RoutePort` per Service port: its port (served on the route's
  clusterIP, and on every node's addresses for a LoadBalancer Service) and
  its nodePort (on every node's addresses; 0: none), with the Service's type,
  clusterIP, externalTrafficPolicy, internalTrafficPolicy, the ClientIP
  affinity timeout (0: none) and loadBalancerSourceRanges on the route;
- its backends are the endpoints with `conditions.ready` that published a
  host port for that port (`hostPorts[<port name>]`), reached at the
  endpoint's first address; an endpoint listed by two slices (while the
  controller moves it) counts once; backends are ordered by pod, then
  address and port, so equal inputs give equal routes;
- the traffic weights of the slices (every slice of a Service carries the
  same ones; their union is taken);
- loadBalancing defaults to RoundRobin;
- a headless Service (`clusterIP: None`) gets no ports (no node proxy listens
  for it) and `headless` set; its `endpoints` are the ready endpoints, each at
  its first address (the pod's) with its pod, node and hostname, for DNS.
"""

from __future__ import annotations

from collections.abc import Iterable

from protos.corral.v1 import discovery_pb2, service_pb2
from protos.services import affinity_seconds, is_headless
from protos.wellknown import SERVICE_NAME

DEFAULT_LOAD_BALANCING = "RoundRobin"


def service_key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def slice_service_key(endpoint_slice: discovery_pb2.EndpointSlice) -> str | None:
    """The key of the Service a slice belongs to, from its service-name label."""
    name = endpoint_slice.metadata.labels.get(SERVICE_NAME, "")
    return service_key(endpoint_slice.metadata.namespace, name) if name else None


def route_for(
    service: service_pb2.Service,
    slices: Iterable[discovery_pb2.EndpointSlice],
) -> discovery_pb2.ServiceRoute:
    slices = sorted(slices, key=lambda s: s.metadata.name)
    m = service.metadata
    route = discovery_pb2.ServiceRoute(
        namespace=m.namespace,
        name=m.name,
        load_balancing=service.spec.load_balancing or DEFAULT_LOAD_BALANCING,
        resource_version=int(m.resource_version) if m.resource_version.isdigit() else 0,
    )
    if not is_headless(service):
        route.cluster_ip = service.spec.cluster_ip
        route.type = service.spec.type or "ClusterIP"
        route.external_traffic_policy = service.spec.external_traffic_policy
        route.internal_traffic_policy = service.spec.internal_traffic_policy
        route.session_affinity_seconds = affinity_seconds(service.spec)
        route.load_balancer_source_ranges.extend(service.spec.load_balancer_source_ranges)
    ready = _ready_endpoints(slices)
    if is_headless(service):
        route.headless = True
        backends = [
            discovery_pb2.RouteBackend(
                address=e.addresses[0], pod=e.target_ref.name, node=e.node_name, hostname=e.hostname
            )
            for e in ready
        ]
        route.endpoints.extend(sorted(backends, key=lambda b: (b.pod, b.address)))
        return route
    for port in service.spec.ports:
        route_port = route.ports.add(
            name=port.name, protocol=port.protocol or "TCP", port=port.port, node_port=port.node_port
        )
        backends = [
            discovery_pb2.RouteBackend(
                address=e.addresses[0],
                port=e.host_ports[port.name],
                pod=e.target_ref.name,
                node=e.node_name,
                group=e.group,
            )
            for e in ready
            if e.host_ports.get(port.name, 0) > 0
        ]
        backends.sort(key=lambda b: (b.pod, b.address, b.port))
        route_port.backends.extend(backends)
    for endpoint_slice in slices:
        route.weights.update(endpoint_slice.traffic_weights)
    return route


def _identity(endpoint: discovery_pb2.Endpoint) -> tuple[object, ...]:
    """The pod behind an endpoint; for one without a pod (a user's slice), its content."""
    ref = endpoint.target_ref
    if ref.uid or ref.name:
        return ("pod", ref.namespace, ref.name, ref.uid)
    return ("address", tuple(endpoint.addresses), tuple(sorted(endpoint.host_ports.items())))


def _ready_endpoints(slices: Iterable[discovery_pb2.EndpointSlice]) -> list[discovery_pb2.Endpoint]:
    seen: set[tuple[object, ...]] = set()
    ready: list[discovery_pb2.Endpoint] = []
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.endpoints:
            if not endpoint.conditions.ready or not endpoint.addresses:
                continue
            identity = _identity(endpoint)
            if identity in seen:
                continue
            seen.add(identity)
            ready.append(endpoint)
    return ready
