"""route_for: ready backends per Service port, listen ports, weights, defaults."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from controlplane.registry.routes import route_for
from protos.corral.v1 import discovery_pb2, service_pb2
from protos.wellknown import SERVICE_NAME


def service(*ports: tuple[str, int, int], load_balancing: str = "") -> service_pb2.Service:
    s = service_pb2.Service()
    s.metadata.name, s.metadata.namespace, s.metadata.resource_version = "web", "default", "42"
    s.spec.load_balancing = load_balancing
    for name, port, node_port in ports or (("", 80, 0),):
        s.spec.ports.add(name=name, port=port, node_port=node_port, protocol="TCP")
    return s


def endpoint(
    pod: str,
    *,
    ready: bool = True,
    address: str = "10.0.0.1",
    host_ports: dict[str, int] | None = None,
    group: str = "",
    node: str = "n1",
) -> discovery_pb2.Endpoint:
    e = discovery_pb2.Endpoint(
        addresses=[address], node_name=node, group=group, host_ports={"": 31000} if host_ports is None else host_ports
    )
    e.conditions.ready = ready
    e.target_ref.kind, e.target_ref.name, e.target_ref.uid = "Pod", pod, f"uid-{pod}"
    return e


def slice_of(
    name: str, endpoints: Sequence[discovery_pb2.Endpoint], weights: dict[str, int] | None = None
) -> discovery_pb2.EndpointSlice:
    s = discovery_pb2.EndpointSlice(address_type="IPv4", endpoints=endpoints, traffic_weights=weights or {})
    s.metadata.name, s.metadata.namespace = name, "default"
    s.metadata.labels[SERVICE_NAME] = "web"
    return s


def backends(route: discovery_pb2.ServiceRoute, index: int = 0) -> list[tuple[str, str, int]]:
    return [(b.pod, b.address, b.port) for b in route.ports[index].backends]


@pytest.mark.parametrize(
    ("endpoints", "expected"),
    [
        pytest.param([endpoint("a")], [("a", "10.0.0.1", 31000)], id="ready"),
        pytest.param([endpoint("a", ready=False)], [], id="not-ready"),
        pytest.param(
            [endpoint("b", address="10.0.0.2", host_ports={"": 31005}), endpoint("a")],
            [("a", "10.0.0.1", 31000), ("b", "10.0.0.2", 31005)],
            id="ordered-by-pod",
        ),
        pytest.param([endpoint("a", host_ports={"other": 31000})], [], id="no-host-port-for-this-port"),
    ],
)
def test_backends(endpoints: list[discovery_pb2.Endpoint], expected: list[tuple[str, str, int]]) -> None:
    route = route_for(service(), [slice_of("web-0", endpoints)])
    assert backends(route) == expected


def test_route_shape_and_defaults() -> None:
    route = route_for(service(("http", 80, 0), ("admin", 81, 30081)), [])
    assert (route.namespace, route.name, route.resource_version) == ("default", "web", 42)
    assert route.load_balancing == "RoundRobin"
    assert [(p.name, p.protocol, p.port, p.node_port, len(p.backends)) for p in route.ports] == [
        ("http", "TCP", 80, 0, 0),
        ("admin", "TCP", 81, 30081, 0),
    ]
    assert dict(route.weights) == {}
    assert route_for(service(load_balancing="LeastConnections"), []).load_balancing == "LeastConnections"


def test_a_route_carries_the_address_type_and_policies() -> None:
    lb = service(("dns", 53, 30053))
    lb.spec.ports[0].protocol = "UDP"
    lb.spec.type, lb.spec.cluster_ip, lb.spec.external_traffic_policy = "LoadBalancer", "10.43.0.10", "Local"
    lb.spec.load_balancer_source_ranges.append("10.0.0.0/8")
    route = route_for(lb, [])
    assert (route.cluster_ip, route.type, route.external_traffic_policy) == ("10.43.0.10", "LoadBalancer", "Local")
    assert list(route.load_balancer_source_ranges) == ["10.0.0.0/8"]
    assert [(p.protocol, p.port, p.node_port) for p in route.ports] == [("UDP", 53, 30053)]


@pytest.mark.parametrize(
    ("affinity", "timeout", "seconds"),
    [
        pytest.param("None", None, 0, id="none"),
        pytest.param("ClientIP", 60, 60, id="client-ip"),
        pytest.param("ClientIP", None, 10800, id="client-ip-stored-without-timeout"),
    ],
)
def test_a_route_carries_the_internal_policy_and_affinity(affinity: str, timeout: int | None, seconds: int) -> None:
    svc = service()
    svc.spec.cluster_ip, svc.spec.internal_traffic_policy, svc.spec.session_affinity = "10.43.0.10", "Local", affinity
    if timeout is not None:
        svc.spec.session_affinity_config.client_ip.timeout_seconds = timeout
    route = route_for(svc, [])
    assert (route.internal_traffic_policy, route.session_affinity_seconds) == ("Local", seconds)


def test_each_port_gets_the_endpoints_that_published_it() -> None:
    both = endpoint("a", host_ports={"http": 31000, "admin": 31001}, group="h1")
    http_only = endpoint("b", address="10.0.0.2", host_ports={"http": 31002})
    route = route_for(service(("http", 80, 0), ("admin", 81, 0)), [slice_of("web-0", [both, http_only])])
    assert backends(route, 0) == [("a", "10.0.0.1", 31000), ("b", "10.0.0.2", 31002)]
    assert backends(route, 1) == [("a", "10.0.0.1", 31001)]
    first = route.ports[0].backends[0]
    assert (first.node, first.group) == ("n1", "h1")


def test_an_endpoint_in_two_slices_counts_once() -> None:
    moving = endpoint("a")
    route = route_for(service(), [slice_of("web-0", [moving]), slice_of("web-1", [moving, endpoint("b")])])
    assert [b.pod for b in route.ports[0].backends] == ["a", "b"]


def test_weights_come_from_the_slices() -> None:
    slices = [
        slice_of("web-0", [endpoint("a", group="old")], {"old": 80, "new": 20}),
        slice_of("web-1", [endpoint("b", group="new")], {"old": 80, "new": 20}),
    ]
    assert dict(route_for(service(), slices).weights) == {"old": 80, "new": 20}


def test_equal_inputs_give_equal_routes_whatever_the_slice_order() -> None:
    slices = [slice_of("web-0", [endpoint("a")]), slice_of("web-1", [endpoint("b", address="10.0.0.2")])]
    assert route_for(service(), slices) == route_for(service(), list(reversed(slices)))
