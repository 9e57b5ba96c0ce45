"""A Service's virtual IP and node ports: the ranges, and what an object write must claim and free. Pure.

Every Service that is not headless has a clusterIP from the Service range
(`--service-cidr`, default 10.43.0.0/16 as k3s; the network and broadcast
addresses are never given). A NodePort Service, and a LoadBalancer Service
unless `allocateLoadBalancerNodePorts: false`, has a nodePort per port from
the node port range (`--service-node-port-range`, default 30000-32767). Both
may be asked for; asked-for values must lie in the range.

`claims(old, new)` says what a write of `new` over `old` (None: a create)
needs: the addresses and ports to claim (new ones), and those to free once
the write is stored (held by `old`, no longer by `new`). Values the manifest
leaves out are kept from `old` (`keep_allocated`), as the Kubernetes API
server does for an update without clusterIP or nodePort.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Final

from protos.corral.v1 import service_pb2
from protos.services import is_headless

DEFAULT_SERVICE_CIDR = "10.43.0.0/16"
DEFAULT_NODE_PORT_RANGE = "30000-32767"
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")
_DEFAULT_NETWORK: Final = ipaddress.IPv4Network(DEFAULT_SERVICE_CIDR)


class RangeError(ValueError):
    """A --service-cidr or --service-node-port-range that cannot be used."""


@dataclass(frozen=True)
class ServiceRanges:
    cidr: ipaddress.IPv4Network = _DEFAULT_NETWORK
    node_ports: tuple[int, int] = (30000, 32767)

    @classmethod
    def parse(cls, cidr: str = DEFAULT_SERVICE_CIDR, node_ports: str = DEFAULT_NODE_PORT_RANGE) -> ServiceRanges:
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError as e:
            raise RangeError(f"--service-cidr {cidr!r}: {e}") from e
        if not isinstance(network, ipaddress.IPv4Network):
            raise RangeError(f"--service-cidr {cidr!r}: only IPv4 ranges are supported")
        if network.prefixlen > 30:
            raise RangeError(f"--service-cidr {cidr!r}: too small, at most /30")
        low, sep, high = node_ports.partition("-")
        if not (low.isdigit() and high.isdigit() and sep) or not 0 < int(low) <= int(high) < 65536:
            raise RangeError(f"--service-node-port-range {node_ports!r}: expected FIRST-LAST, e.g. 30000-32767")
        return cls(network, (int(low), int(high)))

    @property
    def ip_count(self) -> int:
        return self.cidr.num_addresses - 2

    def ip_at(self, index: int) -> str:
        """The `index`-th usable address (0 .. ip_count-1)."""
        return str(self.cidr.network_address + 1 + index)

    def ip_problem(self, ip: str) -> str:
        """Why `ip` cannot be a clusterIP from this range ("" when it can)."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return "must be a valid IP address"
        if not isinstance(address, ipaddress.IPv4Address):
            return "must be an IPv4 address (corral's Services are IPv4 SingleStack)"
        if address not in self.cidr:
            return f"provided IP is not in the valid range; the range of valid IPs is {self.cidr}"
        if address in (self.cidr.network_address, self.cidr.broadcast_address):
            return f"provided IP is the network or broadcast address of {self.cidr}"
        return ""

    def node_port_problem(self, port: int) -> str:
        low, high = self.node_ports
        if not low <= port <= high:
            return f"provided port is not in the valid range. The range of valid ports is {low}-{high}"
        return ""

    @property
    def node_port_text(self) -> str:
        return f"{self.node_ports[0]}-{self.node_ports[1]}"


def wants_cluster_ip(service: service_pb2.Service) -> bool:
    return not is_headless(service)


def wants_node_ports(service: service_pb2.Service) -> bool:
    spec = service.spec
    if spec.type == "NodePort":
        return True
    if spec.type == "LoadBalancer":
        return not spec.HasField("allocate_load_balancer_node_ports") or spec.allocate_load_balancer_node_ports
    return False


def _port_key(port: service_pb2.ServicePort) -> tuple[str, int, str]:
    return (port.name, port.port, port.protocol or "TCP")


def keep_allocated(old: service_pb2.Service, new: service_pb2.Service) -> None:
    """Fill in what `new` leaves out from `old`: its clusterIP, and each port's nodePort (by port
    name, else by number and protocol) while `new` still wants node ports. A type change to
    ClusterIP drops the nodePorts (as Kubernetes does)."""
    if not new.spec.cluster_ip and not new.spec.cluster_ips and old.spec.cluster_ip:
        new.spec.cluster_ip = old.spec.cluster_ip
        new.spec.cluster_ips[:] = list(old.spec.cluster_ips) or [old.spec.cluster_ip]
    if not wants_node_ports(new):
        had = held_node_ports(old)
        for port in new.spec.ports:
            if port.node_port in had:
                port.node_port = 0
        return
    by_name = {p.name: p.node_port for p in old.spec.ports if p.name and p.node_port}
    by_number = {(p.port, p.protocol or "TCP"): p.node_port for p in old.spec.ports if p.node_port}
    for port in new.spec.ports:
        if port.node_port:
            continue
        kept = by_name.get(port.name) if port.name else None
        port.node_port = kept or by_number.get((port.port, port.protocol or "TCP"), 0)


@dataclass
class Claims:
    """What a write needs: new addresses and ports to claim, and those to free after it is stored."""

    ip: str = ""  # the clusterIP to claim ("" none, or "*" to allocate)
    node_ports: list[int] = field(default_factory=list)  # asked-for node ports to claim
    allocate_node_ports: list[int] = field(default_factory=list)  # indexes of ports to allocate one for
    free_ip: str = ""
    free_node_ports: list[int] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.ip or self.node_ports or self.allocate_node_ports or self.free_ip or self.free_node_ports)


ALLOCATE = "*"


def held_node_ports(service: service_pb2.Service | None) -> set[int]:
    return {p.node_port for p in service.spec.ports if p.node_port} if service is not None else set()


def claims(old: service_pb2.Service | None, new: service_pb2.Service) -> Claims:
    """See the module docstring (`new` already has `keep_allocated` applied on an update)."""
    out = Claims()
    old_ip = old.spec.cluster_ip if old is not None and not is_headless(old) else ""
    if wants_cluster_ip(new):
        if not new.spec.cluster_ip:
            out.ip = ALLOCATE
        elif new.spec.cluster_ip != old_ip:
            out.ip = new.spec.cluster_ip
    if old_ip and old_ip != new.spec.cluster_ip:
        out.free_ip = old_ip
    had = held_node_ports(old)
    asked: list[int] = []
    for i, port in enumerate(new.spec.ports):
        if port.node_port:
            if port.node_port not in had and port.node_port not in asked:
                asked.append(port.node_port)
        elif wants_node_ports(new):
            out.allocate_node_ports.append(i)
    out.node_ports = asked
    out.free_node_ports = sorted(had - held_node_ports(new))
    return out


def node_address_ports(service: service_pb2.Service) -> list[tuple[int, str]]:
    """(port, field path) of what `service` takes on every node's addresses: its nodePorts, and a
    LoadBalancer Service's ports (k3s' ServiceLB serves them there). ClusterIP ports are not here:
    they live on the Service's own address."""
    taken: list[tuple[int, str]] = []
    if is_headless(service):
        return taken
    for i, port in enumerate(service.spec.ports):
        if port.node_port:
            taken.append((port.node_port, f"spec.ports[{i}].nodePort"))
        if service.spec.type == "LoadBalancer":
            taken.append((port.port, f"spec.ports[{i}].port"))
    return taken
