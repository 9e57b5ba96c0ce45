"""A headless Service through the control plane, in process: pods with hostname and subdomain →
endpoints controller → EndpointSlices (pod addresses, hostnames) → route hub → a node's
WatchServices stream → the DNS answers that node gives (no proxy ports)."""

from __future__ import annotations

from collections.abc import Mapping

import dns.message

from agent.network.dns.records import build_zone, respond
from protos.corral.v1 import discovery_pb2, node_service_pb2, pod_pb2, service_pb2
from tests.integration.test_services import Plane, RouteReader, plane, ready_node

__all__ = ["plane"]  # the fixture, shared with test_services


def headless() -> service_pb2.Service:
    s = service_pb2.Service()
    s.metadata.name = "db"
    s.spec.cluster_ip = "None"
    s.spec.selector["app"] = "db"
    return s


def member(name: str) -> pod_pb2.Pod:
    p = pod_pb2.Pod()
    p.metadata.name = name
    p.metadata.labels["app"] = "db"
    p.spec.node_name = "n1"
    p.spec.hostname, p.spec.subdomain = name, "db"
    p.spec.containers.add(name="db", image="redis:7")
    return p


def running(ip: str, *, ready: bool) -> pod_pb2.PodStatus:
    status = pod_pb2.PodStatus(phase="Running", host_ip="10.0.0.1", pod_ip=ip)
    status.conditions.add(type="Ready", status="True" if ready else "False")
    return status


def resolve(routes: Mapping[str, discovery_pb2.ServiceRoute], name: str) -> list[str]:
    zone = build_zone(routes.values())
    response = respond(dns.message.make_query(name, "A"), zone, "172.18.0.1")
    assert response is not None
    return sorted(str(rd) for rrset in response.answer for rd in rrset)


async def test_headless_names_resolve_to_ready_pods_through_the_registry(plane: Plane) -> None:
    await ready_node(plane.api, "n1")
    await plane.api.create(headless())
    for name in ("db-0", "db-1"):
        await plane.api.create(member(name))
    await plane.set_status("db-0", running("172.18.0.5", ready=True))
    await plane.set_status("db-1", running("172.18.0.6", ready=False))
    nodes = await plane.node("n1")
    reader = RouteReader(nodes.WatchServices(node_service_pb2.ServicesRequest(node_name="n1")))

    def has(count: int) -> bool:
        route = reader.routes.get("default/db")
        return route is not None and len(route.endpoints) == count

    await reader.until(lambda _: has(1), "db-0 in the headless route")
    route = reader.routes["default/db"]
    assert route.headless and not route.ports
    assert resolve(reader.routes, "db.default.svc.cluster.local.") == ["172.18.0.5"]
    assert resolve(reader.routes, "db-0.db.default.svc.cluster.local.") == ["172.18.0.5"]
    assert resolve(reader.routes, "db-1.db.default.svc.cluster.local.") == []

    await plane.set_status("db-1", running("172.18.0.6", ready=True))
    await reader.until(lambda _: has(2), "db-1 ready")
    assert resolve(reader.routes, "db.default.svc.cluster.local.") == ["172.18.0.5", "172.18.0.6"]
    assert resolve(reader.routes, "db-1.db.default.svc.cluster.local.") == ["172.18.0.6"]
