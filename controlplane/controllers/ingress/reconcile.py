"""The ingress controller's pure core: an Ingress' status and its warnings."""

from __future__ import annotations

from collections.abc import Iterable

from controlplane.registry.ingress import IngressPlan
from protos.corral.v1 import ingress_pb2, node_pb2
from protos.nodes import is_ready

# Which node address the status shows, best first (as k3s' ServiceLB).
ADDRESS_TYPES = ("ExternalIP", "InternalIP")


def node_address(node: node_pb2.Node) -> str:
    for kind in ADDRESS_TYPES:
        found = next((a.address for a in node.status.addresses if a.type == kind and a.address), "")
        if found:
            return found
    return ""


def ingress_status(nodes: Iterable[node_pb2.Node]) -> ingress_pb2.IngressStatus:
    """status.loadBalancer.ingress: every Ready node's address (every node serves ingress), sorted."""
    addresses = sorted({a for n in nodes if is_ready(n) and (a := node_address(n))})
    status = ingress_pb2.IngressStatus()
    for address in addresses:
        status.load_balancer.ingress.add(ip=address)
    return status


def warnings(plan: IngressPlan, key: str) -> list[tuple[str, str]]:
    """(reason, message) for every Warning event the Ingress `key` should carry."""
    found = [("Conflict", message) for message in plan.conflicts.get(key, [])]
    found += [("DefaultCertificate", message) for message in plan.tls_problems.get(key, [])]
    backends = [p.backend for h in plan.routes.hosts for p in h.paths]
    if plan.routes.HasField("default_backend"):
        backends.append(plan.routes.default_backend)
    problems = sorted({b.problem for b in backends if b.ingress == key and b.problem})
    found += [("BackendNotFound", f"{problem}: requests for it are answered 503") for problem in problems]
    return found
