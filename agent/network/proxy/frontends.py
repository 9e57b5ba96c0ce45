"""Where a Service port is served on a node: its frontends, a pure core both data paths share.

A route port (`discovery_pb2.RoutePort`) is served at:

- `<clusterIP>:<port>`, when the route has a clusterIP (every Service but a
  headless one) — reachable from this node's processes and pods;
- `<node addresses>:<nodePort>`, when it has a nodePort (NodePort and
  LoadBalancer Services);
- `<node addresses>:<port>`, for a LoadBalancer Service (as k3s' ServiceLB), and
  for a route without a clusterIP (from a control plane before virtual IPs, or
  a Service not yet given one: served as corral served every Service then).

"Node addresses" (`NODE`) are the proxy addresses and pod gateways the
agent serves. Node-address frontends are left out on the reserved ports
(the control plane's, the agent's metrics port: `reserved.py`).

`externalTrafficPolicy: Local` on a node-address frontend keeps only the
backends on this node (`local_only`) and the client's address; `source_ranges`
(a LoadBalancer's loadBalancerSourceRanges) limit who may connect there.
`internalTrafficPolicy: Local` makes the clusterIP frontend `local_only`
(traffic to a clusterIP starts on this node: its pods and processes); the
node-address frontends follow externalTrafficPolicy alone. Every frontend of
a Service with `sessionAffinity: ClientIP` carries its timeout
(`affinity_seconds`; 0: none): each frontend keeps its own affinity table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from protos.corral.v1 import discovery_pb2

NODE = ""  # a frontend on the node's addresses (not on a clusterIP)
LOCAL = "Local"
LOAD_BALANCER = "LoadBalancer"
PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True)
class Frontend:
    address: str  # a clusterIP, or NODE
    port: int
    protocol: str  # "tcp" or "udp"
    local_only: bool = False
    source_ranges: tuple[str, ...] = ()
    affinity_seconds: int = 0

    @property
    def keeps_client(self) -> bool:
        """externalTrafficPolicy: Local on a node frontend: the kernel keeps the client's address."""
        return self.local_only and self.address == NODE

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.address, self.port, self.protocol)

    def describe(self) -> str:
        where = self.address or "node"
        return f"{where}:{self.port}/{self.protocol}"


def protocol_of(port: discovery_pb2.RoutePort) -> str:
    return (port.protocol or "TCP").lower()


def _ranges(route: discovery_pb2.ServiceRoute) -> tuple[str, ...]:
    valid: list[str] = []
    for text in route.load_balancer_source_ranges:
        try:
            network = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            continue
        if network.version == 4:
            valid.append(str(network))
    return tuple(dict.fromkeys(valid))


def frontends(
    route: discovery_pb2.ServiceRoute, port: discovery_pb2.RoutePort, reserved: Mapping[int, str] | None = None
) -> list[Frontend]:
    """The frontends of one route port (see the module docstring); none for a headless route."""
    if route.headless:
        return []
    protocol = protocol_of(port)
    if protocol not in PROTOCOLS:
        return []
    reserved = reserved or {}
    local = route.external_traffic_policy == LOCAL
    ranges = _ranges(route) if route.type == LOAD_BALANCER else ()
    affinity = max(0, route.session_affinity_seconds)
    out: list[Frontend] = []
    if route.cluster_ip:
        internal_local = route.internal_traffic_policy == LOCAL
        out.append(Frontend(route.cluster_ip, port.port, protocol, internal_local, affinity_seconds=affinity))
    on_node: list[int] = []
    if port.node_port:
        on_node.append(port.node_port)
    if route.type == LOAD_BALANCER or not route.cluster_ip:
        on_node.append(port.port)
    for number in dict.fromkeys(on_node):
        if 0 < number < 65536 and number not in reserved:
            out.append(Frontend(NODE, number, protocol, local and bool(route.cluster_ip), ranges, affinity))
    return [f for f in out if 0 < f.port < 65536]


def reserved_hits(
    route: discovery_pb2.ServiceRoute, port: discovery_pb2.RoutePort, reserved: Mapping[int, str]
) -> list[int]:
    """The node-address ports of this route port that `reserved` leaves out."""
    every = {f.port for f in frontends(route, port) if f.address == NODE}
    return sorted(p for p in every if p in reserved)


def allows(front: Frontend, client: str) -> bool:
    """Whether `client` may connect to `front` (its source ranges; none: everyone)."""
    if not front.source_ranges:
        return True
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(r) for r in front.source_ranges)
