"""One pod as an endpoint of a Service, pure.

A pod on the pod network (its `status.podIP` inside its node's
`spec.podCIDR`: a Docker pod on a node with a pod subnet) is reached at its
own address on the container port, as in Kubernetes: for each Service port
the targetPort resolves to a container port (a number as is, a name through
`spec.containers[].ports[].name` or a sidecar's, unset: the Service port),
which is the endpoint's port for that Service port (`hostPorts[<port name>]`
holds the port at the endpoint's address, whatever its name says). Each
Docker container of a pod has its own address (`containerStatuses[].ip`; the
podIP is the first app container's): a port a named targetPort finds in
another container (a sidecar's) is reached at that container's address; the
endpoint's address is the one of the container serving the Service's first
port, and Service ports served by a container with another address are left
out (they would need a second endpoint).

Any other pod shares its node's network (hostNetwork, the process runtime) or
publishes its ports on the node (a Docker pod on a node without a pod subnet:
the range was exhausted, or an agent of an earlier version): it is reached at
its node's address (`status.hostIP`) on the host port its container published,
which the agent reports in `status.containerStatuses[].ports` (a sidecar's in
`initContainerStatuses`; the spec's hostPort when the status does not show it
yet). Such a pod that publishes none of the Service's ports is no endpoint at
all. A headless Service's endpoint is the pod's own address (`status.podIP`)
in every case, published ports or not, since clients reach it directly
through DNS; its `hostname` is the pod's `spec.hostname` when the pod's
`spec.subdomain` names the Service (Kubernetes' rule for
`<hostname>.<service>.<namespace>.svc.cluster.local`).

Conditions, as Kubernetes': serving = the pod is Ready and its node is Ready
(or the Service has publishNotReadyAddresses); terminating = the pod has a
deletionTimestamp; ready = serving and not terminating (only ready endpoints
get new connections).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from protos import nodes as nodeutil
from protos import pods as podutil
from protos.corral.v1 import discovery_pb2, node_pb2, pod_pb2, service_pb2
from protos.services import is_headless
from protos.wellknown import POD_TEMPLATE_HASH


@dataclass(frozen=True)
class Target:
    """Where a Service port lands in one pod: the container port, and the
    container that declares it (None: any container)."""

    container_port: int
    container: str | None
    # The Service port's protocol (TCP or UDP): a container port of another protocol is not it.
    protocol: str = "TCP"


def selects(service: service_pb2.Service, pod: pod_pb2.Pod) -> bool:
    """Whether the Service's selector picks the pod (a Service without selector picks none)."""
    selector = service.spec.selector
    if not selector or pod.metadata.namespace != service.metadata.namespace:
        return False
    labels = pod.metadata.labels
    return all(labels.get(k) == v for k, v in selector.items())


def is_candidate(service: service_pb2.Service, pod: pod_pb2.Pod) -> bool:
    """Bound, with an IPv4 address (the node's; a headless Service's: the pod's) and not finished."""
    return bool(pod.spec.node_name) and _is_ipv4(address(service, pod)) and not podutil.is_terminal(pod)


def address(service: service_pb2.Service, pod: pod_pb2.Pod, node: node_pb2.Node | None = None) -> str:
    """Where clients reach the pod for this Service: the pod itself (on the pod network, or for a
    headless Service), else its node."""
    if is_headless(service) or on_pod_network(pod, node):
        return pod.status.pod_ip
    return pod.status.host_ip


def on_pod_network(pod: pod_pb2.Pod, node: node_pb2.Node | None) -> bool:
    """Whether the pod has an address of its own: its podIP inside its node's pod subnet."""
    if node is None or not node.spec.pod_cidr or not pod.status.pod_ip:
        return False
    try:
        return ipaddress.IPv4Address(pod.status.pod_ip) in ipaddress.IPv4Network(node.spec.pod_cidr)
    except ValueError:
        return False


@functools.lru_cache(maxsize=4096)  # the nodes' addresses, read again at every sync of a Service
def _is_ipv4(address: str) -> bool:
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return True


def target(pod: pod_pb2.Pod, port: service_pb2.ServicePort) -> Target | None:
    """The container port a Service port's targetPort means in this pod."""
    wanted = port.target_port
    protocol = port.protocol or "TCP"
    if wanted.HasField("str_val") and wanted.str_val:
        for container in podutil.long_running(pod.spec):
            for declared in container.ports:
                if declared.name == wanted.str_val and _same(declared.protocol, protocol):
                    return Target(declared.container_port, container.name, protocol)
        return None
    number = wanted.int_val if wanted.HasField("int_val") and wanted.int_val else port.port
    return Target(number, None, protocol)


def host_port(pod: pod_pb2.Pod, where: Target) -> int:
    """The host port published for a container port (0: none)."""
    for status in podutil.long_running_statuses(pod):
        if where.container is None or status.name == where.container:
            for published in status.ports:
                if (
                    published.container_port == where.container_port
                    and published.host_port
                    and _same(published.protocol, where.protocol)
                ):
                    return published.host_port
    for container in podutil.long_running(pod.spec):
        if where.container is None or container.name == where.container:
            for declared in container.ports:
                if (
                    declared.container_port == where.container_port
                    and declared.host_port
                    and _same(declared.protocol, where.protocol)
                ):
                    return declared.host_port
    return 0


def container_ip(pod: pod_pb2.Pod, where: Target) -> str:
    """The own address (as its agent reported it) of the container serving `where`: the one named,
    else the first declaring the port; "" when unknown or none declares it."""
    name = where.container
    if name is None:
        name = next(
            (
                c.name
                for c in podutil.long_running(pod.spec)
                for p in c.ports
                if p.container_port == where.container_port and _same(p.protocol, where.protocol)
            ),
            None,
        )
    if name is None:
        return ""
    return next((s.ip for s in podutil.long_running_statuses(pod) if s.name == name), "")


def _same(protocol: str, wanted: str) -> bool:
    """A container port's protocol ("" is TCP) is the Service port's."""
    return (protocol or "TCP").upper() == wanted.upper()


def endpoint_for(
    service: service_pb2.Service,
    pod: pod_pb2.Pod,
    nodes: Mapping[str, node_pb2.Node],
) -> discovery_pb2.Endpoint | None:
    """The pod as an endpoint of the Service, or None when it is reached at none of its ports
    (a headless Service's pods are endpoints whatever they publish)."""
    node = nodes.get(pod.spec.node_name)
    own_address = on_pod_network(pod, node)
    at = address(service, pod, node)
    host_ports: dict[str, int] = {}
    for port in service.spec.ports:
        where = target(pod, port)
        if where is None:
            continue
        if own_address:
            ip = container_ip(pod, where) or pod.status.pod_ip
            if not host_ports:
                at = ip  # the container serving the first port (each Docker container has its own address)
            if ip == at:
                host_ports[port.name] = where.container_port
        elif reached := host_port(pod, where):
            host_ports[port.name] = reached
    if not host_ports and not is_headless(service):
        return None
    ready = service.spec.publish_not_ready_addresses or podutil.is_ready(pod)
    serving = ready and nodeutil.is_ready(node)
    terminating = podutil.is_terminating(pod)
    m = pod.metadata
    endpoint = discovery_pb2.Endpoint(
        addresses=[at],
        node_name=pod.spec.node_name,
        group=m.labels.get(POD_TEMPLATE_HASH, ""),
        host_ports=host_ports,
    )
    if pod.spec.hostname and pod.spec.subdomain == service.metadata.name:
        endpoint.hostname = pod.spec.hostname
    endpoint.conditions.ready = serving and not terminating
    endpoint.conditions.serving = serving
    endpoint.conditions.terminating = terminating
    endpoint.target_ref.kind = "Pod"
    endpoint.target_ref.namespace = m.namespace
    endpoint.target_ref.name = m.name
    endpoint.target_ref.uid = m.uid
    return endpoint


# Whether the Service takes the pod (selected and a candidate), and its endpoint if it publishes one.
Member = tuple[bool, discovery_pb2.Endpoint | None]
MemberOf = Callable[[service_pb2.Service, pod_pb2.Pod, Mapping[str, node_pb2.Node]], Member]


def member(service: service_pb2.Service, pod: pod_pb2.Pod, nodes: Mapping[str, node_pb2.Node]) -> Member:
    if not (selects(service, pod) and is_candidate(service, pod)):
        return False, None
    return True, endpoint_for(service, pod, nodes)


class Members:
    """`member`, kept per (Service, pod) while the Service, the pod and the pod's node are the
    same versions (the informers replace an object on each change): a sync of a Service over
    10,000 pods reads again only the pods that changed. Only the pods a Service took at its
    last sync are kept (`synced`), and nothing of a Service gone (`forget`)."""

    def __init__(self) -> None:
        self._kept: dict[str, dict[str, tuple[object, object, object, Member]]] = {}
        self._seen: dict[str, tuple[object, object, object, Member]] = {}
        self._service = ""

    def begin(self, service_key: str) -> None:
        self._service, self._seen = service_key, {}

    def __call__(self, service: service_pb2.Service, pod: pod_pb2.Pod, nodes: Mapping[str, node_pb2.Node]) -> Member:
        key = f"{pod.metadata.namespace}/{pod.metadata.name}"
        node = nodes.get(pod.spec.node_name)
        kept = self._kept.get(self._service, {}).get(key)
        if kept is not None and kept[0] is service and kept[1] is pod and kept[2] is node:
            result = kept[3]
        else:
            result = member(service, pod, nodes)
        if result[0]:  # only the pods it takes: another Service's are refused in a label lookup
            self._seen[key] = (service, pod, node, result)
        return result

    def synced(self) -> None:
        self._kept[self._service] = self._seen
        self._seen = {}

    def forget(self, service_key: str) -> None:
        self._kept.pop(service_key, None)
