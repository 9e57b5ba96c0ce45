"""The ingress proxy takes a backend's endpoints from the Service route the node proxy
gets: the TCP port of that name, its weights, kept across updates."""

from __future__ import annotations

from agent.network.ingress.proxy import IngressProxy
from protos.corral.v1 import discovery_pb2


def route(*ports: tuple[str, str, int]) -> discovery_pb2.ServiceRoute:
    r = discovery_pb2.ServiceRoute(namespace="default", name="dns", weights={"new": 1, "old": 0})
    for name, protocol, backend_port in ports:
        r.ports.add(name=name, protocol=protocol, port=53).backends.add(
            address="10.0.0.1", port=backend_port, pod=f"p{backend_port}", group="new"
        )
    return r


def test_the_tcp_port_of_that_name_and_the_services_weights() -> None:
    proxy = IngressProxy(["127.0.0.1"])
    proxy.update({"default/dns": route(("dns", "UDP", 5353), ("dns", "TCP", 8053))})
    balancer = proxy.balancer("default/dns", "dns")
    assert balancer is not None and [b.key for b in balancer.backends] == ["10.0.0.1:8053"]
    assert proxy.balancer("default/dns", "other") is None and proxy.balancer("default/none", "dns") is None
    # An update refreshes the same balancer; a port gone drops it.
    proxy.update({"default/dns": route(("dns", "TCP", 9053))})
    assert [b.key for b in balancer.backends] == ["10.0.0.1:9053"]
    proxy.update({})
    assert proxy.balancer("default/dns", "dns") is None
