"""The service controller's decisions, pure: which allocation keys to free or claim again, and
a LoadBalancer Service's status.

`repair(services, keys, now=…, grace=…)` compares the Services stored with the
allocation keys (`apiserver.allocator`): a key whose owner no longer holds it
(the Service is gone, is another incarnation, or has another address or port)
is freed once its claim is older than `grace` (a claim whose Service write is
on its way is left alone); a Service that holds an address or port without
its key gets it claimed again; a Service that has no clusterIP yet (stored
before corral allocated them) or misses nodePorts its type needs is listed
for an allocation.

`load_balancer_status(service, addresses)`: a LoadBalancer Service's ingress
is every node's address (as k3s' ServiceLB), sorted; other types have none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controlplane.apiserver.allocator import Owner
from controlplane.apiserver.service_ranges import wants_cluster_ip, wants_node_ports
from protos.corral.v1 import service_pb2


@dataclass(frozen=True)
class Key:
    """One allocation key: its owner (None: unreadable) and revision."""

    owner: Owner | None
    revision: int


@dataclass
class Repair:
    free: list[tuple[str, int]] = field(default_factory=list)  # (key, revision)
    claim: list[tuple[str, service_pb2.Service]] = field(default_factory=list)  # (key, its holder)
    allocate: list[str] = field(default_factory=list)  # "namespace/name" of Services missing a value
    # (key, holder that has it without owning it, owner) — two Services with one value: logged.
    clashes: list[tuple[str, str, str]] = field(default_factory=list)


def held_keys(service: service_pb2.Service, ip_key: str, port_key: str) -> list[str]:
    """The allocation keys `service` should own (`ip_key`/`port_key`: prefixes)."""
    keys: list[str] = []
    if wants_cluster_ip(service) and service.spec.cluster_ip:
        keys.append(ip_key + service.spec.cluster_ip)
    keys += [port_key + str(p.node_port) for p in service.spec.ports if p.node_port]
    return keys


def needs_allocation(service: service_pb2.Service) -> bool:
    if wants_cluster_ip(service) and not service.spec.cluster_ip:
        return True
    return wants_node_ports(service) and any(not p.node_port for p in service.spec.ports)


def repair(
    services: Iterable[service_pb2.Service],
    keys: Mapping[str, Key],
    *,
    ip_prefix: str,
    port_prefix: str,
    now: float,
    grace: float,
) -> Repair:
    out = Repair()
    holders: dict[str, service_pb2.Service] = {}
    for service in sorted(services, key=lambda s: (s.metadata.namespace, s.metadata.name)):
        name = f"{service.metadata.namespace}/{service.metadata.name}"
        if needs_allocation(service):
            out.allocate.append(name)
        for key in held_keys(service, ip_prefix, port_prefix):
            holders.setdefault(key, service)
            found = keys.get(key)
            if found is None:
                out.claim.append((key, service))
            elif found.owner is None or not found.owner.holds(service):
                owner = f"{found.owner.namespace}/{found.owner.name}" if found.owner else "?"
                out.clashes.append((key, name, owner))
    for key, found in sorted(keys.items()):
        holder = holders.get(key)
        if holder is not None and found.owner is not None and found.owner.holds(holder):
            continue
        if holder is not None:
            continue  # held by a Service, owned by another: a clash, not a leak (reported above)
        if found.owner is None or now - found.owner.at >= grace:
            out.free.append((key, found.revision))
    return out


def load_balancer_status(service: service_pb2.Service, addresses: Iterable[str]) -> service_pb2.LoadBalancerStatus:
    status = service_pb2.LoadBalancerStatus()
    if service.spec.type == "LoadBalancer":
        for address in sorted(set(addresses)):
            status.ingress.add(ip=address, ip_mode="VIP")
    return status
